"""Koch v1.1 leader (six XL330-M077; the gripper is a current-limited spring trigger)."""
