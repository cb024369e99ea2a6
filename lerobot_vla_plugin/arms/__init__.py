"""What our followers and leaders share: motor tables, the safety layer, health monitoring, torque-off on exit.

Kept apart from `robots/` and `teleoperators/` so the config modules (imported on every `lerobot-*` start-up)
never pull in bus or safety code.
"""
