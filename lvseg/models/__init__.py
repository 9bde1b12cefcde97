"""Model builders: a name -> builder dict per family (baseline networks, probe heads, backbones)."""
