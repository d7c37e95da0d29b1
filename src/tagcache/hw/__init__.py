"""The machine: DRAM, tag-storage regions and the data-PFN to tag-block mapping."""

from tagcache.hw.layout import MachineLayout, TagRegion

__all__ = ["MachineLayout", "TagRegion"]
