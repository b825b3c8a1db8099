"""Generation writes, one module per topic: model versions, prompts, batches, chunks and
candidates."""
