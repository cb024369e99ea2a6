"""Benchmarks: each compares our component with LeRobot's built-in one in the same run and prints ratios."""
