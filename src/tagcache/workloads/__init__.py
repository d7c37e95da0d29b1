"""Workloads: the event columns every source produces, and the generators."""
