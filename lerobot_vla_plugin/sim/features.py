"""What the virtual arm records beside a real arm's features (importing this loads no MuJoCo).

Where the objects are, in the instruction's terms, per frame: a training-only target (a camera policy never reads
it as input; a real arm has no such sensor), so an image encoder can be taught where a cube a few pixels wide is.
World metres; the table top is z = 0.
"""

OBJECT_POSITIONS_FEATURE = "observation.sim_object_positions"
OBJECT_POSITION_NAMES = tuple(f"{obj}_{axis}" for obj in ("instructed_cube", "other_cube", "bowl") for axis in "xyz")

# Features a policy may list among its inputs (LeRobot lists every `observation.*` feature of its training data)
# but never needs at run time: an arm that does not have them is still served.
TRAINING_ONLY_FEATURES = frozenset({OBJECT_POSITIONS_FEATURE})
