"""LeRobot plugin for low-cost arms: servo drivers, arms, recorder and the flow_vla policy.

Importing this package is cheap on purpose; heavy modules (torch models, MuJoCo) are imported where used.
"""

__version__ = "0.1.0"
