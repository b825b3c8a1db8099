"""Generation writes, one module per topic: model versions, prompts, batches, chunks,
candidates and frame strips."""
