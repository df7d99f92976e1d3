package main

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// replicaListeners are the HTTP and Raft listeners the launcher opened
// for one replica.
type replicaListeners struct{ http, raft net.Listener }

func (l replicaListeners) close() {
	closeListener(l.http)
	closeListener(l.raft)
}

// clusterListeners are the listeners of the replicas not started yet,
// by replica ID.
type clusterListeners map[int]replicaListeners

// listenAll listens on every replica's HTTP and Raft address and replaces
// each address by the one listened on (which names the port when the
// address asked for port 0). On error it closes what it opened.
func listenAll(httpAddrs, raftAddrs map[int]string) (clusterListeners, error) {
	lns := clusterListeners{}
	listen := func(id int, what string, addrs map[int]string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addrs[id])
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("port %s (%s of replica %d) is already in use: is a cluster already running? Choose other ports with -base-http and -base-raft (port 0 picks free ones)", port(addrs[id]), what, id)
			}
			return nil, fmt.Errorf("cannot listen on %s (%s of replica %d): %w", addrs[id], what, id, err)
		}
		addrs[id] = ln.Addr().String()
		return ln, nil
	}
	for _, id := range sortedIDs(httpAddrs) {
		var l replicaListeners
		var err error
		if l.http, err = listen(id, "HTTP", httpAddrs); err == nil {
			if l.raft, err = listen(id, "Raft", raftAddrs); err != nil {
				l.http.Close()
			}
		}
		if err != nil {
			lns.close()
			return nil, err
		}
		lns[id] = l
	}
	return lns, nil
}

// take returns replica id's listeners, which the caller now owns.
func (lns clusterListeners) take(id int) replicaListeners {
	l := lns[id]
	delete(lns, id)
	return l
}

// close closes the listeners not taken.
func (lns clusterListeners) close() {
	for id, l := range lns {
		l.close()
		delete(lns, id)
	}
}
