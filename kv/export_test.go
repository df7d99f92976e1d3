package kv

// SetLeaderLocalGet turns the leader-local GET mutation (see
// leaderLocalGet) on or off, for the test that shows the stale-read test
// catches it; it returns a function that restores the previous setting.
func SetLeaderLocalGet(on bool) (restore func()) {
	old := leaderLocalGet.Swap(on)
	return func() { leaderLocalGet.Store(old) }
}

// State describes everything the server's store holds (see state), for
// comparing replicas.
func (s *Server) State() string { return s.state() }
