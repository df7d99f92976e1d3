// Package labrpc is a simulated network for testing RPC-based code such as
// Raft. Servers share no memory with their clients: a call's arguments are
// deep-copied through gob when Call is made, and the reply when the handler
// returns, so later changes on either side are not seen by the other. The
// network can lose requests and replies, delay and reorder them, and
// disconnect clients or servers.
//
// Usage:
//
//	net := MakeNetwork()
//	end := net.MakeEnd(endname)     // a client end, one per client/server pair
//	net.AddServer(servername, srv)  // srv := MakeServer(); srv.AddService(MakeService(rcvr))
//	net.Connect(endname, servername)
//	net.Enable(endname, true)
//	ok := end.Call("Raft.AppendEntries", &args, &reply)
//
// Call returns true if the handler ran and reply holds its answer, false if
// the request or reply was lost (the handler may or may not have run).
package labrpc
