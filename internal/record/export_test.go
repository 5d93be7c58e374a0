package record

// MP4Layout lays out a recording's MP4 without the cache, for benchmarks.
func MP4Layout(s *Store, id string) (int64, error) {
	r, err := s.Get(id)
	if err != nil {
		return 0, err
	}
	snap := r.snapshot()
	idx, err := snap.progressive()
	if err != nil {
		return 0, err
	}
	return idx.size, nil
}
