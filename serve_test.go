package raft

// serveWait serves args from server from and copies the reply to reply.
func serveWait[T any](rf *Raft, from int, args any, reply *T) error {
	r, err := rf.serveSync(from, args)
	if err != nil {
		return err
	}
	*reply = *r.(*T)
	return nil
}
