"""SpotFunnel: self-hostable production phone agents that book appointments."""
__version__ = "0.1.0"
