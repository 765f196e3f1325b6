"""The source of a user's model builder, written to a temporary module by the python: source tests."""

import textwrap

PYTHON_BUILDER = textwrap.dedent("""
    from torch import nn

    def build(num_classes, width=4):
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, num_classes))
""")
