"""What the virtual arm records beside a real arm's features (importing this loads no MuJoCo).

Where the objects are, in the instruction's terms, per frame: a training-only target (a camera policy never reads
it as input; a real arm has no such sensor), so an image encoder can be taught where a cube a few pixels wide is.
World metres; the table top is z = 0.
"""

OBJECT_POSITIONS_FEATURE = "observation.sim_object_positions"
OBJECT_POSITION_NAMES = tuple(f"{obj}_{axis}" for obj in ("instructed_cube", "other_cube", "bowl") for axis in "xyz")
# The same positions as they were at the episode's first frame, in every frame: what a policy that looks at the
# scene once, before it moves, knows about it (flow_vla's object tokens with object_tokens_at_run_time="first").
OBJECT_START_POSITIONS_FEATURE = "observation.sim_object_start_positions"

# The same objects by name, in one order whatever the task: what a readout that finds each object by its
# appearance learns (flow_vla's object_readout_source="appearance"), while the instruction says which is which.
OBJECT_NAMED_POSITIONS_FEATURE = "observation.sim_object_positions_by_name"
NAMED_OBJECTS = ("red_cube", "blue_cube", "bowl")
OBJECT_NAMED_POSITION_NAMES = tuple(f"{obj}_{axis}" for obj in NAMED_OBJECTS for axis in "xyz")

# Features a policy may list among its inputs (LeRobot lists every `observation.*` feature of its training data)
# but never needs at run time: an arm that does not have them is still served.
TRAINING_ONLY_FEATURES = frozenset({OBJECT_POSITIONS_FEATURE, OBJECT_START_POSITIONS_FEATURE,
                                    OBJECT_NAMED_POSITIONS_FEATURE})


def sim_object_dataset_features() -> dict:
    """The three features above as LeRobotDataset feature specs."""
    def spec(names: tuple[str, ...]) -> dict:
        return {"dtype": "float32", "shape": (len(names),), "names": list(names)}

    return {OBJECT_POSITIONS_FEATURE: spec(OBJECT_POSITION_NAMES),
            OBJECT_START_POSITIONS_FEATURE: spec(OBJECT_POSITION_NAMES),
            OBJECT_NAMED_POSITIONS_FEATURE: spec(OBJECT_NAMED_POSITION_NAMES)}


class SimObjectFrames:
    """Each frame's values of those features, read from the virtual arm (emulator/virtual_arm.VirtualArm) at the
    moment the frame is written. `new_episode()` before an episode's first frame: the start positions are that
    frame's. Used by every recording of the virtual arm (demonstrations and rollouts), so a merge of the two keeps
    what the policy's object readout learns from."""

    def __init__(self, virtual):
        self.virtual = virtual
        self._start = None

    def new_episode(self) -> None:
        self._start = None

    def values(self, keys) -> dict:
        """The features among `keys` (a dataset recorded before a later feature existed goes on without it)."""
        positions = self.virtual.task_object_positions()
        if self._start is None:
            self._start = positions
        values = {OBJECT_POSITIONS_FEATURE: positions, OBJECT_START_POSITIONS_FEATURE: self._start}
        if OBJECT_NAMED_POSITIONS_FEATURE in keys:
            values[OBJECT_NAMED_POSITIONS_FEATURE] = self.virtual.named_object_positions()
        return {key: value for key, value in values.items() if key in keys}
