package nodehttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// File is a file another node serves (a recording's), read a range at a
// time through a client on the Transport: an io.ReadSeeker for
// http.ServeContent, which then answers the client's ranges, HEAD and
// conditional requests itself. While a piece is written the next one is
// already asked for.
type File struct {
	// Header is the holder's answer's headers (its Content-Type,
	// Last-Modified, ETag, Cache-Control).
	Header http.Header
	size   int64

	ctx    context.Context
	client *http.Client
	url    string
	ua     []string
	chunk  int64

	off     int64 // where the next Read reads
	buf     []byte
	bufOff  int64
	ahead   chan piece // the piece asked for in advance, if any
	aheadAt int64
}

type piece struct {
	data []byte
	err  error
}

// OpenFile asks node for chunk bytes of uri from from (where the client's
// range starts, 0 for the whole file). A file comes back as a File; any
// other answer (a playlist, an error, a range past the end) as the
// response to pass on as it is.
func OpenFile(ctx context.Context, client *http.Client, node, uri string, from, chunk int64, userAgent []string) (*File, *http.Response, error) {
	f := &File{ctx: ctx, client: client, url: "http://" + node + uri, ua: userAgent, chunk: chunk}
	resp, err := f.get(from)
	if err != nil {
		return nil, nil, err
	}
	total, ok := rangeTotal(resp)
	if !ok {
		return nil, resp, nil
	}
	defer resp.Body.Close()
	data, err := readPiece(resp, chunk)
	if err != nil {
		return nil, nil, err
	}
	f.Header, f.size, f.buf, f.bufOff, f.off = resp.Header, total, data, from, from
	return f, nil, nil
}

// ServeFile answers r with node's file at uri through client (on a
// Transport), chunk bytes at a time from from (where the client's range
// starts): by http.ServeContent over a File, with the holder's content
// type, caching and validators; an answer that is not a range of a file
// (a playlist, an error) passed on as it came. An error is a node that did
// not answer: nothing has been written.
func ServeFile(w http.ResponseWriter, r *http.Request, client *http.Client, node, uri string, from, chunk int64) error {
	f, resp, err := OpenFile(r.Context(), client, node, uri, from, chunk, r.Header.Values("User-Agent"))
	if err != nil {
		return err
	}
	if resp != nil {
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
		return nil
	}
	defer f.Close()
	for _, h := range []string{"Content-Type", "Cache-Control", "Etag", "Last-Modified", "Access-Control-Allow-Origin"} {
		if v := f.Header.Values(h); len(v) > 0 {
			w.Header()[h] = v
		}
	}
	modified, _ := http.ParseTime(f.Header.Get("Last-Modified"))
	http.ServeContent(w, r, "", modified, f)
	return nil
}

// get asks for the chunk from off.
func (f *File) get(off int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(WithMedia(f.ctx), http.MethodGet, f.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+f.chunk-1))
	if len(f.ua) > 0 {
		req.Header["User-Agent"] = f.ua
	}
	return f.client.Do(req)
}

// fetch reads the chunk from off.
func (f *File) fetch(off int64) piece {
	resp, err := f.get(off)
	if err != nil {
		return piece{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return piece{err: fmt.Errorf("nodehttp: the holder answered %d for a piece", resp.StatusCode)}
	}
	data, err := readPiece(resp, f.chunk)
	if err == nil && len(data) == 0 {
		err = io.ErrUnexpectedEOF
	}
	return piece{data, err}
}

// readPiece reads an answer's body of at most chunk bytes, in one
// allocation when its length is known (the Transport's answers).
func readPiece(resp *http.Response, chunk int64) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= chunk {
		data := make([]byte, n)
		_, err := io.ReadFull(resp.Body, data)
		return data, err
	}
	return io.ReadAll(io.LimitReader(resp.Body, chunk+1))
}

// Size is the file's size.
func (f *File) Size() int64 { return f.size }

// Read implements io.Reader.
func (f *File) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if f.off < f.bufOff || f.off >= f.bufOff+int64(len(f.buf)) {
		var pc piece
		if f.ahead != nil && f.aheadAt == f.off {
			pc = <-f.ahead
			f.ahead = nil
		} else {
			f.drop()
			pc = f.fetch(f.off)
		}
		if pc.err != nil {
			return 0, pc.err
		}
		f.buf, f.bufOff = pc.data, f.off
	}
	if next := f.bufOff + int64(len(f.buf)); f.ahead == nil && next < f.size {
		// The next piece is asked for while this one is written.
		ch := make(chan piece, 1)
		go func() { ch <- f.fetch(next) }()
		f.ahead, f.aheadAt = ch, next
	}
	n := copy(p, f.buf[f.off-f.bufOff:])
	f.off += int64(n)
	return n, nil
}

// Seek implements io.Seeker.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size
	default:
		return 0, errors.New("nodehttp: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("nodehttp: seek before the start")
	}
	f.off = offset
	return offset, nil
}

// drop waits for a piece asked for in advance and forgets it.
func (f *File) drop() {
	if f.ahead != nil {
		<-f.ahead
		f.ahead = nil
	}
}

// Close waits for a piece still being asked for.
func (f *File) Close() error {
	f.drop()
	return nil
}

// rangeTotal is the size of the whole file a 206 answer gives a range of.
func rangeTotal(resp *http.Response) (int64, bool) {
	if resp.StatusCode != http.StatusPartialContent || len(resp.Header["Content-Range"]) != 1 {
		return 0, false
	}
	_, total, ok := strings.Cut(resp.Header["Content-Range"][0], "/")
	n, err := strconv.ParseInt(total, 10, 64)
	return n, ok && err == nil && n > 0
}
