"""Quality writes, a module per topic: policy, gold, membership, raters, results, runs and
crowd imports."""
