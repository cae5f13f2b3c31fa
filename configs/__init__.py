"""Pipeline configs shipped with pxserve, one YAML file per pipeline name."""
