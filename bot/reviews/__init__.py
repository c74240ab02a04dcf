"""Review response (docs/design.md, 1): debounced comment batches, engine runs, replies, checks."""
