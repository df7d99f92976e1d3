package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"time"

	"github.com/raftkit/raft/core"
)

// Framing. net/rpc's own gob codec cannot enforce a size limit: it decodes
// straight from the connection, so a message is only known to be too large
// once it has been read whole into memory, and a message refused halfway
// leaves the stream out of step. Hence a codec of our own, under net/rpc's
// Server and our client. After the handshake (handshake.go) each direction
// of a connection is a sequence of frames:
//
//	header length  uint32, big endian
//	body length    uint32, big endian
//	header         gob: an rpc.Request (caller to server) or rpc.Response
//	body           gob: the call's arguments or its reply; empty in a
//	               response that carries an error
//
// The header and body are two messages of one gob stream per direction, as
// in net/rpc's own codec, so a type is described once per connection, not
// once per message. The lengths let a reader refuse a body over the limit
// without reading it into memory (it skips it), and let a writer refuse one
// it has encoded by not sending it. Both are safe only if a skipped or
// unsent body holds no type description the other end would miss; so the
// first frame each side sends (the primer) carries a zero value of every
// type it will ever send, and afterwards each header and body is a single
// gob value message. The writers only ever encode those types.

const (
	frameHeaderLen = 8
	// maxHeaderBytes bounds a frame's header; a larger one breaks the
	// connection. Headers are tiny: a method name, a sequence number and
	// an error string, which the server cuts to maxErrorLen.
	maxHeaderBytes = 64 << 10
	maxErrorLen    = 1 << 10
	// keepBuffer is the largest frame buffer a connection keeps between
	// frames; larger ones are dropped after use. It holds a snapshot chunk
	// of 1 MiB (as MaxChunkBytes advises) with room to spare, so that a
	// transfer does not allocate and clear a new buffer for every chunk:
	// that halves the time a chunk takes over loopback.
	keepBuffer = 2 << 20
	readBuffer = 64 << 10
)

// errProtocol marks a malformed stream; the connection is closed.
var errProtocol = errors.New("protocol error")

// frameWriter encodes frames for one direction of a connection. It is not
// safe for concurrent use.
type frameWriter struct {
	buf bytes.Buffer
	enc *gob.Encoder
}

func newFrameWriter() *frameWriter {
	w := new(frameWriter)
	w.enc = gob.NewEncoder(&w.buf)
	return w
}

var zeroFrameHeader [frameHeaderLen]byte

// encode lays out one frame in the writer's buffer: hdr, then bodies (none
// for an empty body), and returns the body's length. After an error the
// stream is unusable.
func (w *frameWriter) encode(hdr any, bodies ...any) (bodyLen int, err error) {
	w.buf.Reset()
	w.buf.Write(zeroFrameHeader[:])
	if err := w.enc.Encode(hdr); err != nil {
		return 0, fmt.Errorf("encode header: %w", err)
	}
	hlen := w.buf.Len() - frameHeaderLen
	for _, b := range bodies {
		if err := w.enc.Encode(b); err != nil {
			return 0, fmt.Errorf("encode %T: %w", b, err)
		}
	}
	blen := w.buf.Len() - frameHeaderLen - hlen
	if hlen > maxHeaderBytes || int64(blen) > maxFrameBody {
		return 0, fmt.Errorf("%w: frame of %d+%d bytes", errProtocol, hlen, blen)
	}
	b := w.buf.Bytes()
	binary.BigEndian.PutUint32(b[0:4], uint32(hlen))
	binary.BigEndian.PutUint32(b[4:8], uint32(blen))
	return blen, nil
}

// frame returns the frame that encode laid out.
func (w *frameWriter) frame() []byte { return w.buf.Bytes() }

// reset forgets the frame in the buffer, dropping a large buffer.
func (w *frameWriter) reset() {
	if w.buf.Cap() > keepBuffer {
		w.buf = bytes.Buffer{}
	}
	w.buf.Reset()
}

// frameReader decodes frames from one direction of a connection. It is not
// safe for concurrent use.
type frameReader struct {
	r   *bufio.Reader
	max int // largest body accepted; larger ones are skipped
	dec *gob.Decoder
	in  bytes.Reader // what dec reads: a header or a body, never more
	hdr []byte
	// The current frame's body, and its length if it was skipped.
	body    []byte
	skipped int
}

func newFrameReader(r *bufio.Reader, max int) *frameReader {
	fr := &frameReader{r: r, max: max}
	fr.dec = gob.NewDecoder(&fr.in) // a bytes.Reader is an io.ByteReader: gob adds no buffer of its own
	return fr
}

// next reads a frame and decodes its header into hdr. A body over the limit
// is skipped, not read into memory: next then returns its length as
// oversize, and the frame's body cannot be decoded. Any error breaks the
// stream.
func (r *frameReader) next(hdr any) (oversize int, err error) {
	var lens [frameHeaderLen]byte
	if _, err := io.ReadFull(r.r, lens[:]); err != nil {
		return 0, err
	}
	hlen := int(binary.BigEndian.Uint32(lens[0:4]))
	blen := int64(binary.BigEndian.Uint32(lens[4:8]))
	if hlen == 0 || hlen > maxHeaderBytes {
		return 0, fmt.Errorf("%w: frame header of %d bytes", errProtocol, hlen)
	}
	r.hdr = grow(r.hdr, hlen)
	if _, err := io.ReadFull(r.r, r.hdr); err != nil {
		return 0, unexpectedEOF(err)
	}
	if err := checkMessages(r.hdr); err != nil {
		return 0, fmt.Errorf("frame header: %w", err)
	}
	r.in.Reset(r.hdr)
	if err := r.dec.Decode(hdr); err != nil {
		return 0, fmt.Errorf("%w: decode header: %v", errProtocol, err)
	}
	if r.in.Len() != 0 {
		return 0, fmt.Errorf("%w: %d stray bytes after the header", errProtocol, r.in.Len())
	}
	r.skipped = 0
	if blen > int64(r.max) {
		if _, err := io.CopyN(io.Discard, r.r, blen); err != nil {
			return 0, unexpectedEOF(err)
		}
		r.body = r.body[:0]
		r.skipped = int(blen)
		return int(blen), nil
	}
	if cap(r.body) > keepBuffer {
		r.body = nil
	}
	r.body = grow(r.body, int(blen))
	if _, err := io.ReadFull(r.r, r.body); err != nil {
		return 0, unexpectedEOF(err)
	}
	if err := checkMessages(r.body); err != nil {
		return 0, fmt.Errorf("frame body: %w", err)
	}
	return 0, nil
}

// checkMessages checks that b is a sequence of whole gob messages, each a
// length and that many bytes. gob trusts a message's length, and allocates
// for it (up to 10 MiB) before it finds the input short; checked first, a
// message costs no more memory than the frame that holds it.
func checkMessages(b []byte) error {
	for off := 0; off < len(b); {
		n, width, ok := gobUint(b[off:])
		if !ok || n > uint64(len(b)-off-width) {
			return fmt.Errorf("%w: gob message at offset %d claims %d bytes, %d left", errProtocol, off, n, len(b)-off-width)
		}
		off += width + int(n)
	}
	return nil
}

// gobUint decodes an unsigned integer as gob encodes it at the start of b:
// a byte under 0x80 is the value, any other is the negated count of the
// big-endian bytes that follow. ok is false if b does not hold one.
func gobUint(b []byte) (x uint64, width int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	if b[0] < 0x80 {
		return uint64(b[0]), 1, true
	}
	n := -int(int8(b[0]))
	if n > 8 || n >= len(b) {
		return 0, 0, false
	}
	for _, c := range b[1 : 1+n] {
		x = x<<8 | uint64(c)
	}
	return x, 1 + n, true
}

// decodeBody decodes the current frame's body into vs, in order; with no
// vs, it checks the body and discards it. Any error breaks the stream.
func (r *frameReader) decodeBody(vs ...any) error {
	if r.skipped > 0 {
		return fmt.Errorf("%w: body of %d bytes was skipped", errProtocol, r.skipped)
	}
	r.in.Reset(r.body)
	if len(vs) == 0 {
		if len(r.body) == 0 {
			return nil
		}
		vs = []any{nil} // Decode(nil) reads a value and discards it
	}
	for _, v := range vs {
		if err := r.dec.Decode(v); err != nil {
			return fmt.Errorf("%w: decode body: %v", errProtocol, err)
		}
	}
	if r.in.Len() != 0 {
		return fmt.Errorf("%w: %d stray bytes after the body", errProtocol, r.in.Len())
	}
	return nil
}

// maxFrameBody is the largest body a frame can describe.
const maxFrameBody = 1<<32 - 1

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// writePrimer encodes the primer frame: a zero value of every type in
// types, the first being the header.
func (w *frameWriter) writePrimer(types []any) ([]byte, error) {
	if _, err := w.encode(types[0], types[1:]...); err != nil {
		return nil, fmt.Errorf("encode primer: %w", err)
	}
	return w.frame(), nil
}

// readPrimer reads the other side's primer frame, which the size limit
// does not apply to.
func (r *frameReader) readPrimer(types []any) error {
	limit := r.max
	r.max = maxHeaderBytes
	defer func() { r.max = limit }()
	if _, err := r.next(types[0]); err != nil {
		return fmt.Errorf("read primer: %w", err)
	}
	if err := r.decodeBody(types[1:]...); err != nil {
		return fmt.Errorf("read primer: %w", err)
	}
	return nil
}

// newPrimer returns zero values of the types one side of a connection
// sends (the server's replies, or the caller's requests): the header's
// type first, then the bodies'.
func newPrimer(server bool) []any {
	if server {
		return []any{&rpc.Response{}, &core.RequestVoteReply{}, &core.AppendEntriesReply{}, &core.ProbeReply{}, &core.InstallSnapshotReply{}}
	}
	return []any{&rpc.Request{}, &core.RequestVoteArgs{}, &core.AppendEntriesArgs{}, &core.ProbeArgs{}, &core.InstallSnapshotArgs{}}
}

// serverCodec is the rpc.ServerCodec of one accepted connection. net/rpc's
// Server reads requests from a single goroutine and serialises writes.
type serverCodec struct {
	t     *TCP
	from  int // the caller's server ID
	conn  net.Conn
	rd    *frameReader
	wr    *frameWriter
	large int // the current request's body length, if it was skipped
	req   string
}

// ReadRequestHeader implements rpc.ServerCodec. It closes the connection
// if no request comes within IdleTimeout.
func (c *serverCodec) ReadRequestHeader(r *rpc.Request) error {
	c.conn.SetReadDeadline(time.Now().Add(c.t.idleTimeout))
	n, err := c.rd.next(r)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.closeConn()
			c.t.log.Debug("transport: closed a connection from peer idle for IdleTimeout",
				"peer", c.from, "idle_timeout", c.t.idleTimeout)
			return err
		}
		c.fail("read request", err)
		return err
	}
	c.large, c.req = n, r.ServiceMethod
	if n > 0 {
		c.t.log.Warn("transport: refused a request over the size limit",
			"peer", c.from, "method", r.ServiceMethod, "bytes", n, "limit", c.t.maxMsg)
	}
	return nil
}

// ReadRequestBody implements rpc.ServerCodec. A body over the limit fails
// that request only: net/rpc answers it with the error and reads on.
func (c *serverCodec) ReadRequestBody(v any) error {
	if c.large > 0 {
		return fmt.Errorf("transport: request %s of %d bytes is over server %d's limit of %d bytes",
			c.req, c.large, c.t.id, c.t.maxMsg)
	}
	var err error
	if v == nil {
		err = c.rd.decodeBody()
	} else {
		err = c.rd.decodeBody(v)
	}
	if err != nil {
		// net/rpc answers this request with the error and reads on; the
		// closed connection ends that.
		c.fail("read request", err)
	}
	return err
}

// WriteResponse implements rpc.ServerCodec. A reply over the limit is
// replaced by an error, so the call fails and the connection lives on.
func (c *serverCodec) WriteResponse(r *rpc.Response, body any) error {
	var n int
	var err error
	if r.Error != "" {
		if len(r.Error) > maxErrorLen {
			r.Error = r.Error[:maxErrorLen]
		}
		n, err = c.wr.encode(r)
	} else {
		n, err = c.wr.encode(r, body)
	}
	if err == nil && n > c.t.maxMsg {
		c.t.log.Warn("transport: refused to send a reply over the size limit",
			"peer", c.from, "method", r.ServiceMethod, "bytes", n, "limit", c.t.maxMsg)
		r.Error = fmt.Sprintf("transport: reply to %s of %d bytes is over server %d's limit of %d bytes",
			r.ServiceMethod, n, c.t.id, c.t.maxMsg)
		_, err = c.wr.encode(r)
	}
	if err != nil {
		c.fail("encode reply", err)
		return err
	}
	// A reply that cannot be written in a call's time is of no use: the
	// caller stopped waiting, and the peer is not reading.
	c.conn.SetWriteDeadline(time.Now().Add(c.t.callTimeout))
	_, err = c.conn.Write(c.wr.frame())
	c.wr.reset()
	if err != nil {
		c.fail("write reply", err)
	}
	return err
}

// Close implements rpc.ServerCodec.
func (c *serverCodec) Close() error { return c.conn.Close() }

// fail closes the connection after a read or write error, logging the
// errors that are neither a plain hang-up nor the transport's own Close.
func (c *serverCodec) fail(what string, err error) {
	c.closeConn()
	logEnd(c.t, "transport: closing connection from peer", c.from, what, err)
}

// closeConn closes the connection, which then no longer counts against the
// peer's limit; net/rpc's Server may still be writing the replies of the
// calls in progress, in vain.
func (c *serverCodec) closeConn() {
	c.conn.Close()
	c.t.removeServed(c)
}

// logEnd logs why a connection ended: a protocol error as a warning, other
// errors (a reset, a timeout) for debugging, and neither a hang-up nor the
// transport's own Close.
func logEnd(t *TCP, msg string, peer int, op string, err error) {
	switch {
	case err == io.EOF || errors.Is(err, net.ErrClosed) || t.isClosed():
	case errors.Is(err, errProtocol):
		t.log.Warn(msg, "peer", peer, "op", op, "err", err)
	default:
		t.log.Debug(msg, "peer", peer, "op", op, "err", err)
	}
}
