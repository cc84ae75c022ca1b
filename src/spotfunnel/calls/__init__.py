"""One call lifecycle, the simulated caller, scenarios and eval."""
