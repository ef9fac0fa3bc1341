"""The performance suite behind `kabuflow bench`: each module's `run(args) -> dict` measures side by side."""
