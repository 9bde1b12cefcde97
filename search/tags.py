"""The MLflow tags lvsearch writes, by name (no MLflow import: trial workers name them too)."""

KIND_TAG = "lvsearch.kind"            # "search" on parent runs, "trial" on child runs
SEARCH_TAG = "lvsearch.search"        # the search's name, on both
TRIAL_TAG = "lvsearch.trial_id"       # Ray Tune's trial id, on child runs
NODE_TAG = "lvsearch.node"            # IP of the Ray node that ran the trial
PID_TAG = "lvsearch.pid"              # the worker process that ran (or runs) the trial
STATUS_TAG = "lvsearch.status"        # a lvseg.status.Status: completed | pruned at epoch N | failed: ... | ...
DRIVER_TAG = "lvsearch.driver"        # host:pid of the search's driver process, on parent runs
HEARTBEAT_TAG = "lvsearch.heartbeat"  # unix time the driver last said it was alive, on parent runs
HEARTBEAT_S = 30.0                    # how often a live driver writes it; three missed beats: gone
SAMPLES_TAG = "lvsearch.samples"      # trials the search plans, on parent runs
GPUS_TAG = "lvsearch.gpus"            # the GPU ids Ray gave the trial (a share of one, with gpu < 1)
DEVICE_NOTE_TAG = "lvsearch.device_note"  # why a trial given a GPU ran elsewhere
DEVICE_PARTS_TAG = "lvsearch.device_parts"  # the part of its node's card and memory the trial's inputs may use
CAVEATS_TAG = "lvsearch.caveats"      # what the results must not be taken for (synthetic data, random models)
PARENT_TAG = "mlflow.parentRunId"
DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as a run's description
