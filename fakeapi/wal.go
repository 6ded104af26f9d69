package fakeapi

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// The state directory (Config.StateDir) is what etcd is to kube-apiserver:
// what outlives the server process. With it, a restarted fake serves the
// objects and resourceVersions the old one had committed, with the same
// admin token and certificate, so that a restart (graceful or SIGKILL)
// looks to clients like a kube-apiserver restart over a surviving etcd:
// connections drop, the same endpoint answers again, and watches resume
// or get 410 Expired. Files:
//
//	wal         every committed write, appended before the write is
//	            answered (one write(2) per record, no fsync: a killed
//	            process loses nothing the kernel took, which is what etcd
//	            gives kube-apiserver against a process crash; a machine
//	            crash is out of scope)
//	admin.token the admin bearer token
//	tls.crt, tls.key  the self-signed certificate (TLS only)
const (
	walFile        = "wal"
	adminTokenFile = "admin.token"
	tlsCertFile    = "tls.crt"
	tlsKeyFile     = "tls.key"
)

// A WAL record, little endian:
//
//	u32 length of what follows
//	u8  event type (eventAdded, eventModified, eventDeleted)
//	u64 resourceVersion
//	u16 + bytes  resource path "group/version/plural"
//	u16 + bytes  namespace
//	u16 + bytes  name
//	u32 + bytes  the object's JSON (the deleted object's last state for a delete)
const walHeader = 4

// wal appends the committed writes of every store to one file.
type wal struct {
	mu  sync.Mutex
	f   *os.File
	buf []byte
	err error // the first append error; later appends are dropped
	log func(error)
}

// append records one event of the store of res. It is called with the
// store's lock held, so the records of one object are in commit order.
// An error (a full disk) is kept and returned by every later call; the
// write itself has happened in memory and is answered: the simulated
// etcd lost it, which the server logs.
func (w *wal) append(res *resource, e *event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	path := res.group + "/" + res.version + "/" + res.name
	b := w.buf[:0]
	b = append(b, 0, 0, 0, 0, byte(e.typ))
	b = binary.LittleEndian.AppendUint64(b, e.obj.rv)
	b = appendString16(b, path)
	b = appendString16(b, e.obj.namespace)
	b = appendString16(b, e.obj.name)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.obj.raw)))
	b = append(b, e.obj.raw...)
	binary.LittleEndian.PutUint32(b, uint32(len(b)-walHeader))
	w.buf = b
	if _, err := w.f.Write(b); err != nil {
		w.err = fmt.Errorf("state dir: append to %s: %w", w.f.Name(), err)
		if w.log != nil {
			w.log(w.err)
		}
	}
	return w.err
}

func (w *wal) close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f, w.err = nil, errors.New("state dir: closed")
	return err
}

// adminToken is the admin bearer token: the state directory's, or a new
// one (written there when there is a state directory).
func adminToken(stateDir string) (string, error) {
	p := filepath.Join(stateDir, adminTokenFile)
	if stateDir != "" {
		b, err := os.ReadFile(p)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b)), nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("state dir: %w", err)
		}
	}
	var tok [24]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	t := hex.EncodeToString(tok[:])
	if stateDir != "" {
		if err := os.MkdirAll(stateDir, 0o700); err != nil {
			return "", fmt.Errorf("state dir: %w", err)
		}
		if err := os.WriteFile(p, []byte(t+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("state dir: %w", err)
		}
	}
	return t, nil
}

// stateKeyPair reads the certificate and key the state directory holds
// (ok false if it holds none).
func stateKeyPair(stateDir string) (certPEM, keyPEM []byte, ok bool, err error) {
	if stateDir == "" {
		return nil, nil, false, nil
	}
	certPEM, err = os.ReadFile(filepath.Join(stateDir, tlsCertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("state dir: %w", err)
	}
	keyPEM, err = os.ReadFile(filepath.Join(stateDir, tlsKeyFile))
	if err != nil {
		return nil, nil, false, fmt.Errorf("state dir: %w", err)
	}
	return certPEM, keyPEM, true, nil
}

// saveKeyPair keeps a new certificate and key in the state directory.
func saveKeyPair(stateDir string, certPEM, keyPEM []byte) error {
	if stateDir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(stateDir, tlsKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, tlsCertFile), certPEM, 0o644); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	return nil
}

func appendString16(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// walRecord is one decoded record.
type walRecord struct {
	typ            eventType
	rv             uint64
	path, ns, name string
	raw            []byte
}

// readWAL decodes the records of r. A record cut short at the end (a
// process killed in the middle of an append) ends the log: its offset is
// returned so that the caller can truncate it.
func readWAL(r io.Reader, each func(walRecord) error) (good int64, err error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var hdr [walHeader]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return good, nil
			}
			return good, err
		}
		n := binary.LittleEndian.Uint32(hdr[:])
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return good, nil
			}
			return good, err
		}
		rec, ok := decodeWALRecord(body)
		if !ok {
			return good, fmt.Errorf("record at offset %d is malformed", good)
		}
		if err := each(rec); err != nil {
			return good, fmt.Errorf("record at offset %d: %w", good, err)
		}
		good += int64(walHeader + n)
	}
}

func decodeWALRecord(b []byte) (walRecord, bool) {
	var rec walRecord
	if len(b) < 9 {
		return rec, false
	}
	rec.typ = eventType(b[0])
	rec.rv = binary.LittleEndian.Uint64(b[1:9])
	b = b[9:]
	var ok bool
	if rec.path, b, ok = string16(b); !ok {
		return rec, false
	}
	if rec.ns, b, ok = string16(b); !ok {
		return rec, false
	}
	if rec.name, b, ok = string16(b); !ok {
		return rec, false
	}
	if len(b) < 4 {
		return rec, false
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint32(len(b)) != n {
		return rec, false
	}
	rec.raw = b
	return rec, true
}

func string16(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}

// restoreState replays dir's log into the stores (returning false if
// there was none: a fresh state directory), then rewrites the log as one
// record per live object and opens it for appending. Every store's watch
// history starts empty at the restored resourceVersion, as kube-apiserver's
// watch cache starts at the revision its first list from etcd read: until
// it evicts an event, the oldest event it can deliver is that revision + 1
// (k8s.io/apiserver v0.36.3 pkg/storage/cacher/watch_cache.go
// getAllEventsSinceLocked, listResourceVersion), so a watch from an older
// resourceVersion gets 410 Expired and its client lists again.
func (s *Server) restoreState(dir string) (restored bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("state dir: %w", err)
	}
	p := filepath.Join(dir, walFile)
	f, err := os.Open(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("state dir: %w", err)
	default:
		restored = true
		var maxRV uint64
		_, err = readWAL(f, func(rec walRecord) error {
			r := s.byPath[rec.path]
			if r == nil {
				return fmt.Errorf("unknown resource %q", rec.path)
			}
			st := s.stores[r]
			key := objectKey(rec.ns, rec.name)
			if prev := st.objs[key]; prev != nil {
				st.objBytes.Add(-int64(len(prev.raw)))
			}
			if rec.typ == eventDeleted {
				delete(st.objs, key)
			} else {
				d, err := decodeDocument(rec.raw)
				if err != nil {
					return err
				}
				node := ""
				if r.nodeNameField {
					node = d.nodeName()
				}
				st.objs[key] = newObject(rec.raw, rec.ns, rec.name, d.meta.Labels, node, rec.rv)
				st.objBytes.Add(int64(len(rec.raw)))
			}
			maxRV = max(maxRV, rec.rv)
			return nil
		})
		_ = f.Close()
		if err != nil {
			return false, fmt.Errorf("state dir: replay %s: %w", p, err)
		}
		s.rv.Store(maxRV)
		for _, st := range s.stores {
			st.floor = maxRV
		}
	}
	if err := s.compactState(p); err != nil {
		return false, err
	}
	return restored, nil
}

// compactState writes the live objects to a new log, replaces the old one
// with it and opens it for appending.
func (s *Server) compactState(p string) error {
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	w := &wal{f: f}
	for _, r := range s.resources {
		for _, o := range s.stores[r].objs {
			if err := w.append(r, &event{typ: eventAdded, obj: o}); err != nil {
				_ = f.Close()
				return err
			}
		}
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("state dir: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	s.wal = &wal{f: f, log: func(err error) {
		s.log.Error("writes are no longer recorded in the state directory: a restart will lose them", "err", err)
	}}
	for _, st := range s.stores {
		st.wal = s.wal
	}
	return nil
}
