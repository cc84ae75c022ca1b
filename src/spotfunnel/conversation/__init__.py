"""Layer 2: agents as data, objectives, extractors, the policy."""
