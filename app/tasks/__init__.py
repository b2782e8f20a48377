"""The Meshy task domain: task rows, their state machine, progress events."""
