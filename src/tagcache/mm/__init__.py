"""The MM model: page frames and allocator, page cache, LRU, workingset, readahead, reclaim."""
