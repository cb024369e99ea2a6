"""flow_vla: a flow-matching vision-language-action policy for LeRobot.

Kept empty on purpose: LeRobot imports `configuration_flow_vla` at every start-up, and importing this package
must not pull in the torch model code (`modeling_flow_vla`).
"""
