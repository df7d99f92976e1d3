package kv

// Stats are counts of what a Server holds, as Server.Stats reports them.
type Stats struct {
	Keys    int // keys in the store
	Clients int // clients whose latest request the store remembers (exactly-once sessions)
	Waiting int // requests waiting for their entry to be applied
}

// Stats returns what the server holds now.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Keys: len(s.data), Clients: len(s.sessions.byID)}
	for _, ws := range s.waiting {
		st.Waiting += len(ws)
	}
	return st
}
