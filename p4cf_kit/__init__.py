"""P4ContainerFlow Kit: P4-enabled live container migration experiments.

Modules each hold one concept; see README.md ("Architecture") for the map.
"""

__version__ = "0.1.0"
