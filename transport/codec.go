package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

const (
	// keepBuffer is the largest buffer a connection keeps between uses (a
	// reader's scratch buffer, a writer's queue); larger ones are dropped
	// after use. It holds a snapshot chunk of 1 MiB (as MaxChunkBytes
	// advises) with room to spare.
	keepBuffer = 2 << 20
	readBuffer = 64 << 10
)

// frameReader reads the frames of one direction of a connection. It is
// not safe for concurrent use.
type frameReader struct {
	r       *bufio.Reader
	max     int // largest payload accepted; larger ones are skipped
	hdr     [frameHeaderLen]byte
	scratch []byte // the payload of frames whose messages keep nothing
}

func newFrameReader(r *bufio.Reader, max int) *frameReader {
	return &frameReader{r: r, max: max}
}

// frame is a frame read. Its payload is valid until the next read,
// unless the frame owns it (see keepsPayload).
type frame struct {
	typ     byte
	id      uint64
	payload []byte
	// over is the payload's length if it was over the limit and skipped
	// unread (payload is nil then).
	over int
}

// keepsPayload reports whether the message of a frame of type typ may
// keep parts of its payload: an AppendEntries request's commands, an
// InstallSnapshot request's data. Such a frame is read into a buffer of
// its own, which the message owns from then on; every other frame into
// the reader's scratch buffer.
func keepsPayload(typ byte) bool {
	return typ == typeAppendEntries || typ == typeInstallSnapshot
}

// next reads a frame. A payload over the limit is skipped, not read into
// memory: the frame then has over set and no payload. Any error breaks the
// stream.
func (r *frameReader) next() (frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return frame{}, err
	}
	n := int64(binary.BigEndian.Uint32(r.hdr[0:4]))
	f := frame{typ: r.hdr[4], id: binary.BigEndian.Uint64(r.hdr[5:])}
	if n > int64(r.max) {
		if _, err := io.CopyN(io.Discard, r.r, n); err != nil {
			return frame{}, unexpectedEOF(err)
		}
		f.over = int(n)
		return f, nil
	}
	var buf []byte
	if keepsPayload(f.typ) {
		buf = make([]byte, n)
	} else {
		if cap(r.scratch) > keepBuffer {
			r.scratch = nil
		}
		r.scratch = grow(r.scratch, int(n))
		buf = r.scratch
	}
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return frame{}, unexpectedEOF(err)
	}
	f.payload = buf
	return f, nil
}

// inRequest is a request as a server reads it.
type inRequest struct {
	typ  byte
	id   uint64
	req  any // nil if over
	over int // the payload's length, if it was over the limit and skipped
}

// readRequest reads a request frame and decodes it. Any error breaks the
// stream.
func (r *frameReader) readRequest() (inRequest, error) {
	f, err := r.next()
	if err != nil {
		return inRequest{}, err
	}
	if !isRequest(f.typ) {
		return inRequest{}, fmt.Errorf("%w: frame of type %#x where a request was expected", errProtocol, f.typ)
	}
	in := inRequest{typ: f.typ, id: f.id, over: f.over}
	if f.over > 0 {
		return in, nil
	}
	in.req, err = decodeRequest(f.typ, f.payload)
	return in, err
}

// inReply is a reply as a caller reads it: reply, or an error frame's code
// and message, or a payload over the limit.
type inReply struct {
	typ   byte
	id    uint64
	reply any
	code  byte   // of an error frame
	msg   string // of an error frame
	over  int
}

// readReply reads a reply frame and decodes it. Any error breaks the
// stream.
func (r *frameReader) readReply() (inReply, error) {
	f, err := r.next()
	if err != nil {
		return inReply{}, err
	}
	if f.typ != typeError && (f.typ&typeReply == 0 || !isRequest(f.typ&^typeReply)) {
		return inReply{}, fmt.Errorf("%w: frame of type %#x where a reply was expected", errProtocol, f.typ)
	}
	in := inReply{typ: f.typ, id: f.id, over: f.over}
	switch {
	case f.over > 0:
	case f.typ == typeError:
		in.code, in.msg, err = decodeError(f.payload)
	default:
		in.reply, err = decodeReply(f.typ, f.payload)
	}
	return in, err
}

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
