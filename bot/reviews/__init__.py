"""Review response (DESIGN.md, 1): debounced comment batches, engine runs, replies, checks."""
