"""Koch v1.1 follower (XL430-W250 x2 and XL330-M288 x4 on a Dynamixel bus)."""
