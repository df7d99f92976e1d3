package raft

import "github.com/raftkit/raft/transport"

// TCP makes a TCP transport a Transport for New. Its peers are Senders:
// the requests to one peer travel in order on one connection, and a
// leader keeps several AppendEntries in flight to each follower.
func TCP(t *transport.TCP) Transport { return tcpTransport{t} }

type tcpTransport struct{ *transport.TCP }

func (t tcpTransport) Peer(id int) (Peer, error) {
	p, err := t.TCP.Peer(id)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (t tcpTransport) Serve(h Handler) { t.TCP.Serve(h) }
