"""`imc-sidecar demo`: realistic chat traffic from simulated SIP users over real UDP.

`scenario` decides who does what, when (pure, seedable); `agent` is the users' SIP over
UDP; `sidecar` starts a sidecar of its own on request; `tally` counts the outcomes and
writes the summary; `runner` plays a scenario and waits for the sidecar to settle.
"""
