"""What the suite's step files (steps_*.py) share."""
import sys


def suite_module():
    """The running suite's module (its StepFailed is what the step runner catches)."""
    m = sys.modules.get("__main__")
    if m is None or not hasattr(m, "StepFailed"):
        import suite as m  # noqa: PLC0415 - when imported by something else
    return m
