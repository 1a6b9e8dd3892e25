"""Simulated fleets on a virtual clock: the demo and the policy simulator (SPEC section 6)."""
