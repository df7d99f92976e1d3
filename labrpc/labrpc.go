package labrpc

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftkit/raft/labgob"
)

type reqMsg struct {
	endname any
	svcMeth string
	args    payload
}

type replyMsg struct {
	ok    bool
	reply payload
}

// A payload is the content of a request or a reply: a deep copy, private to
// the message, of the value given to Call or filled in by the handler, made
// by encoding the value with gob and decoding it again. A payload is used
// (handed to the handler, or stored into the caller's reply) at most once.
type payload struct {
	val  reflect.Value // *T holding the copy, T being the value's type without pointers; invalid if there is no copy
	raw  []byte        // if there is no copy: the value's gob encoding, on its own
	size int           // encoded size in bytes, for GetTotalBytes
}

// makePayload copies v. It fails only if v cannot be encoded.
func makePayload(v any) (payload, error) {
	if t, ok := baseType(reflect.TypeOf(v)); ok {
		val := reflect.New(t)
		n, err := copyValue(v, val.Interface())
		if err == nil {
			return payload{val: val, size: n}, nil
		}
		if _, ok := err.(decodeError); !ok {
			return payload{}, err
		}
	}
	// v encodes but does not decode into its own type (or its type has too
	// many pointers): keep its encoding, and let the receiver's decoding
	// report the problem as it would for any other mismatch.
	var b bytes.Buffer
	if err := labgob.NewEncoder(&b).Encode(v); err != nil {
		return payload{}, err
	}
	return payload{raw: b.Bytes(), size: b.Len()}, nil
}

// baseType returns t without its pointers, or false if t is nil or has an
// implausible number of them (gob rejects recursive pointer types).
func baseType(t reflect.Type) (reflect.Type, bool) {
	for i := 0; t != nil && t.Kind() == reflect.Pointer; i++ {
		if i == 64 {
			return nil, false
		}
		t = t.Elem()
	}
	return t, t != nil
}

// newValue returns a pointer of type pt to the payload's value, as a handler
// receives its arguments: the copy itself if it has that type, otherwise a
// fresh value decoded from the copy.
func (p payload) newValue(pt reflect.Type) (reflect.Value, error) {
	if p.val.IsValid() && p.val.Type() == pt {
		return p.val, nil
	}
	v := reflect.New(pt.Elem())
	return v, p.decode(v.Interface())
}

// decode stores the payload's value into dst, a pointer (or nil to discard
// it), exactly as gob would decode the original value into dst: merging
// into a non-zero *dst, with labgob's warning.
func (p payload) decode(dst any) error {
	if !p.val.IsValid() {
		return labgob.NewDecoder(bytes.NewReader(p.raw)).Decode(dst)
	}
	if dst == nil {
		return nil // gob discards the value
	}
	if d := reflect.ValueOf(dst); d.Type() == p.val.Type() && !d.IsNil() && d.Elem().IsZero() {
		// The copy is what gob decodes into a zero value of this type,
		// and it is nobody else's.
		d.Elem().Set(p.val.Elem())
		return nil
	}
	_, err := copyValue(p.val.Interface(), dst)
	return err
}

// A copier deep-copies values through gob: an encoder and a decoder sharing
// a buffer, always used together, so the stream between them stays in step
// and the description of a type is sent, and the decoder for it compiled,
// only once per copier instead of once per message. They are labgob's
// encoder and decoder, so its warnings still fire. Idle copiers wait in
// copiers; a copier is used by one goroutine at a time.
type copier struct {
	buf bytes.Buffer
	enc *labgob.LabEncoder
	dec *labgob.LabDecoder
}

var copiers struct {
	mu   sync.Mutex
	free []*copier
}

const (
	maxIdleCopiers = 32
	maxCopierBuf   = 1 << 20 // bytes; a copier that handled a bigger value is dropped, to free its buffers
)

// decodeError is an error from the decoding half of copyValue.
type decodeError struct{ error }

// copyValue encodes src and decodes it into dst (a pointer, or nil to
// discard the value), and returns the size of the encoding. An error from
// decoding is a decodeError.
func copyValue(src, dst any) (int, error) {
	var c *copier
	copiers.mu.Lock()
	if n := len(copiers.free); n > 0 {
		c = copiers.free[n-1]
		copiers.free[n-1] = nil
		copiers.free = copiers.free[:n-1]
	}
	copiers.mu.Unlock()
	if c == nil {
		c = new(copier)
		c.enc = labgob.NewEncoder(&c.buf)
		c.dec = labgob.NewDecoder(&c.buf)
	}

	// After an error (or a panic in a GobEncoder or GobDecoder) the
	// stream may be out of step: the copier is then dropped.
	if err := c.enc.Encode(src); err != nil {
		return 0, err
	}
	n := c.buf.Len()
	if err := c.dec.Decode(dst); err != nil {
		return n, decodeError{err}
	}
	if c.buf.Len() != 0 {
		return n, decodeError{errors.New("labrpc: gob stream out of step")}
	}

	if c.buf.Cap() <= maxCopierBuf {
		copiers.mu.Lock()
		if len(copiers.free) < maxIdleCopiers {
			copiers.free = append(copiers.free, c)
		}
		copiers.mu.Unlock()
	}
	return n, nil
}

// ClientEnd is one client's end of a connection to a server.
type ClientEnd struct {
	endname any
	net     *Network
}

// Call sends an RPC to the service method svcMeth ("Service.Method") of the
// server the end is connected to, and waits for the reply. It returns true if
// the handler ran and reply, a pointer, holds the decoded answer; false if
// the request or reply was lost, the end is disabled or unconnected, the
// server was deleted or replaced, or the network was cleaned up.
// It panics if args cannot be encoded or the reply cannot be decoded.
//
// Call copies args before it sends them, so the server never sees later
// changes to them; reply receives a copy of the handler's reply made when
// the handler returned.
func (e *ClientEnd) Call(svcMeth string, args any, reply any) bool {
	p, err := makePayload(args)
	if err != nil {
		panic(fmt.Sprintf("labrpc: Call(%q): encode args: %v", svcMeth, err))
	}
	rep := e.net.deliver(reqMsg{endname: e.endname, svcMeth: svcMeth, args: p})
	if !rep.ok {
		return false
	}
	if err := rep.reply.decode(reply); err != nil {
		panic(fmt.Sprintf("labrpc: Call(%q): decode reply: %v", svcMeth, err))
	}
	return true
}

// Network is a simulated network connecting ClientEnds to Servers.
// It is safe for concurrent use.
type Network struct {
	mu             sync.Mutex
	reliable       bool
	longDelays     bool // pause a long time on send to a disabled end
	longReordering bool // sometimes delay replies a long time
	ends           map[any]*ClientEnd
	enabled        map[any]bool    // by end name
	servers        map[any]*Server // by server name
	connections    map[any]any     // end name -> server name
	changed        chan struct{}   // closed (and replaced) when any of the three above change
	done           chan struct{}
	cleanup        sync.Once
	jobs           chan job     // to idle workers
	idle           atomic.Int32 // idle workers
	count          atomic.Int64 // total RPCs
	bytes          atomic.Int64 // total bytes of args and replies
}

// MakeNetwork returns a reliable network with no ends or servers. Call
// Cleanup to stop it.
func MakeNetwork() *Network {
	return &Network{
		reliable:    true,
		ends:        map[any]*ClientEnd{},
		enabled:     map[any]bool{},
		servers:     map[any]*Server{},
		connections: map[any]any{},
		changed:     make(chan struct{}),
		done:        make(chan struct{}),
		jobs:        make(chan job),
	}
}

// Cleanup stops the network. Pending and later calls return false.
func (rn *Network) Cleanup() {
	rn.cleanup.Do(func() { close(rn.done) })
}

// Reliable sets whether the network delivers every request and reply
// promptly (true, the default) or delays and drops some of them.
func (rn *Network) Reliable(yes bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.reliable = yes
}

// LongReordering sets whether many replies are held back for a long, random
// time so that they arrive out of order.
func (rn *Network) LongReordering(yes bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.longReordering = yes
}

// LongDelays sets whether calls on a disabled or unconnected end fail after a
// long random delay (up to 7 s) instead of a short one (up to 100 ms).
func (rn *Network) LongDelays(yes bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.longDelays = yes
}

// MakeEnd returns a new, disabled and unconnected client end.
// It panics if an end named endname already exists.
func (rn *Network) MakeEnd(endname any) *ClientEnd {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if _, ok := rn.ends[endname]; ok {
		panic(fmt.Sprintf("labrpc: MakeEnd: %v already exists", endname))
	}
	e := &ClientEnd{endname: endname, net: rn}
	rn.ends[endname] = e
	rn.enabled[endname] = false
	rn.connections[endname] = nil
	return e
}

// change wakes the calls waiting for a reply, so that they check whether
// their server is still reachable. rn.mu must be held.
func (rn *Network) change() {
	close(rn.changed)
	rn.changed = make(chan struct{})
}

// AddServer adds rs under servername, replacing any server of that name;
// calls in progress to the replaced server fail.
func (rn *Network) AddServer(servername any, rs *Server) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.servers[servername] = rs
	rn.change()
}

// DeleteServer removes the server named servername; calls in progress to it
// fail.
func (rn *Network) DeleteServer(servername any) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	delete(rn.servers, servername)
	rn.change()
}

// Connect connects the end named endname to the server named servername.
// An end is connected to at most one server; the server need not exist yet.
func (rn *Network) Connect(endname any, servername any) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.connections[endname] = servername
	rn.change()
}

// Enable enables or disables the end named endname. Calls on a disabled end
// fail, as do calls in progress when it is disabled.
func (rn *Network) Enable(endname any, enabled bool) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.enabled[endname] = enabled
	rn.change()
}

// GetCount returns the number of RPCs received by the server named
// servername, or 0 if there is no such server.
func (rn *Network) GetCount(servername any) int {
	rn.mu.Lock()
	rs := rn.servers[servername]
	rn.mu.Unlock()
	if rs == nil {
		return 0
	}
	return rs.GetCount()
}

// GetTotalCount returns the number of RPCs sent on the network.
func (rn *Network) GetTotalCount() int {
	return int(rn.count.Load())
}

// GetTotalBytes returns the number of bytes of encoded arguments and delivered
// replies sent on the network. Messages travel on long-lived gob streams
// (one per pooled copier), so a type's description is counted the first time
// a stream carries the type, not with every message.
func (rn *Network) GetTotalBytes() int64 {
	return rn.bytes.Load()
}

// endInfo is a snapshot of the network's settings for one end.
type endInfo struct {
	enabled        bool
	servername     any
	server         *Server
	reliable       bool
	longDelays     bool
	longReordering bool
	changed        <-chan struct{} // closed when the settings change
}

func (rn *Network) readEndInfo(endname any) endInfo {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	in := endInfo{
		enabled:        rn.enabled[endname],
		servername:     rn.connections[endname],
		reliable:       rn.reliable,
		longDelays:     rn.longDelays,
		longReordering: rn.longReordering,
		changed:        rn.changed,
	}
	if in.servername != nil {
		in.server = rn.servers[in.servername]
	}
	return in
}

// reachable reports whether a call on endname can still reach server
// (named servername), and returns the channel that is closed when that may
// change.
func (rn *Network) reachable(endname any, servername any, server *Server) (bool, <-chan struct{}) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.enabled[endname] && rn.connections[endname] == servername &&
		rn.servers[servername] == server, rn.changed
}

// sleep waits for d, or until Cleanup; it reports false in the latter case.
func (rn *Network) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-rn.done:
		return false
	}
}

// deliver carries a request to its server and the reply back, with the
// network's losses and delays, in the caller's goroutine.
func (rn *Network) deliver(req reqMsg) replyMsg {
	select {
	case <-rn.done:
		return replyMsg{}
	default:
	}
	rn.count.Add(1)
	rn.bytes.Add(int64(req.args.size))
	in := rn.readEndInfo(req.endname)

	if !in.enabled || in.servername == nil || in.server == nil {
		// Simulate no reply and an eventual timeout. The delay keeps
		// callers from spinning on failures.
		ms := rand.IntN(100)
		if in.longDelays {
			ms = rand.IntN(7000)
		}
		rn.sleep(time.Duration(ms) * time.Millisecond)
		return replyMsg{}
	}

	if !in.reliable {
		if !rn.sleep(time.Duration(rand.IntN(27)) * time.Millisecond) {
			return replyMsg{}
		}
		if rand.IntN(1000) < 100 {
			return replyMsg{} // drop the request
		}
	}

	// Run the handler in another goroutine so that the call can fail as
	// soon as the server is deleted or the end disabled meanwhile.
	ech := rn.serve(in.server, req)
	var reply replyMsg
	for changed, waiting := in.changed, true; waiting; {
		select {
		case reply = <-ech:
			waiting = false
		case <-changed:
			var ok bool
			if ok, changed = rn.reachable(req.endname, in.servername, in.server); !ok {
				return replyMsg{}
			}
		case <-rn.done:
			return replyMsg{}
		}
	}

	// Don't deliver a reply from a server that has been deleted: the caller
	// could otherwise believe a request succeeded whose effects went to a
	// superseded server (e.g. its old Persister).
	if ok, _ := rn.reachable(req.endname, in.servername, in.server); !ok || !reply.ok {
		return replyMsg{}
	}
	switch {
	case !in.reliable && rand.IntN(1000) < 100:
		return replyMsg{} // drop the reply
	case in.longReordering && rand.IntN(900) < 600:
		if !rn.sleep(time.Duration(200+rand.IntN(1+rand.IntN(2000))) * time.Millisecond) {
			return replyMsg{}
		}
	}
	rn.bytes.Add(int64(reply.reply.size))
	return reply
}

// A job is a request for a worker to run.
type job struct {
	server *Server
	req    reqMsg
	reply  chan replyMsg // buffered
}

// maxIdleWorkers bounds the workers a network keeps waiting for requests.
const maxIdleWorkers = 64

// serve runs req's handler on server in an idle worker, or in a new one if
// none is idle, and returns the channel that gets its reply. Workers are
// kept because handlers (reflection, gob) need deep stacks, which a fresh
// goroutine grows anew for every call.
func (rn *Network) serve(server *Server, req reqMsg) <-chan replyMsg {
	j := job{server, req, make(chan replyMsg, 1)}
	select {
	case rn.jobs <- j:
	default:
		go rn.work(j)
	}
	return j.reply
}

// work runs j, then the jobs handed to it while it is idle, until Cleanup
// or until enough other workers are idle.
func (rn *Network) work(j job) {
	for {
		j.reply <- j.server.dispatch(j.req)
		if rn.idle.Add(1) > maxIdleWorkers {
			rn.idle.Add(-1)
			return
		}
		select {
		case j = <-rn.jobs:
			rn.idle.Add(-1)
		case <-rn.done:
			return
		}
	}
}

// Server is a collection of services sharing one network address.
// It is safe for concurrent use.
type Server struct {
	mu       sync.Mutex
	services map[string]*Service
	count    atomic.Int64 // RPCs received
}

// MakeServer returns a server with no services.
func MakeServer() *Server {
	return &Server{services: map[string]*Service{}}
}

// AddService adds svc to the server, replacing any service of the same name.
func (rs *Server) AddService(svc *Service) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.services[svc.name] = svc
}

// GetCount returns the number of RPCs the server has received.
func (rs *Server) GetCount() int {
	return int(rs.count.Load())
}

func (rs *Server) dispatch(req reqMsg) replyMsg {
	rs.count.Add(1)

	name, meth, ok := strings.Cut(req.svcMeth, ".")
	if !ok {
		log.Printf("labrpc: bad service method %q: want Service.Method", req.svcMeth)
		return replyMsg{}
	}
	rs.mu.Lock()
	svc := rs.services[name]
	rs.mu.Unlock()
	if svc == nil {
		rs.mu.Lock()
		have := slices.Sorted(maps.Keys(rs.services))
		rs.mu.Unlock()
		log.Printf("labrpc: unknown service %q in %q; expecting one of %v", name, req.svcMeth, have)
		return replyMsg{}
	}
	return svc.dispatch(meth, req)
}

// Service is an object whose methods can be called over the network.
type Service struct {
	name    string
	rcvr    reflect.Value
	methods map[string]reflect.Method
}

// MakeService returns a service named after the type of receiver (without
// any pointer), offering each exported method of the form
//
//	func (r *T) M(args *A, reply *R)
//
// as "T.M". Other methods are ignored.
func MakeService(receiver any) *Service {
	svc := &Service{
		rcvr:    reflect.ValueOf(receiver),
		methods: map[string]reflect.Method{},
	}
	svc.name = reflect.Indirect(svc.rcvr).Type().Name()
	typ := svc.rcvr.Type()
	for i := 0; i < typ.NumMethod(); i++ {
		m := typ.Method(i)
		mt := m.Type
		if !m.IsExported() || mt.NumIn() != 3 || mt.NumOut() != 0 ||
			mt.In(1).Kind() != reflect.Pointer || mt.In(2).Kind() != reflect.Pointer {
			continue
		}
		svc.methods[m.Name] = m
	}
	return svc
}

func (svc *Service) dispatch(methname string, req reqMsg) replyMsg {
	m, ok := svc.methods[methname]
	if !ok {
		have := slices.Sorted(maps.Keys(svc.methods))
		log.Printf("labrpc: unknown method %q in %q; expecting one of %v", methname, req.svcMeth, have)
		return replyMsg{}
	}

	args, err := req.args.newValue(m.Type.In(1))
	if err != nil {
		log.Printf("labrpc: %s: decode args: %v", req.svcMeth, err)
		return replyMsg{}
	}
	reply := reflect.New(m.Type.In(2).Elem())

	m.Func.Call([]reflect.Value{svc.rcvr, args, reply})

	p, err := makePayload(reply.Interface())
	if err != nil {
		panic(fmt.Sprintf("labrpc: %s: encode reply: %v", req.svcMeth, err))
	}
	return replyMsg{ok: true, reply: p}
}
