package fakeapi

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// object is one stored object version. It is immutable once stored: a
// write replaces the pointer, so readers and watch events share it.
type object struct {
	raw       []byte // the object as served, JSON
	key       string // namespace/name or name
	namespace string // a substring of key
	name      string // a substring of key
	labels    map[string]string
	nodeName  string
	rv        uint64
}

func newObject(raw []byte, namespace, name string, labels map[string]string, nodeName string, rv uint64) *object {
	o := &object{raw: raw, labels: labels, nodeName: nodeName, rv: rv}
	if namespace == "" {
		o.key, o.name = name, name
	} else {
		o.key = namespace + "/" + name
		o.namespace, o.name = o.key[:len(namespace)], o.key[len(namespace)+1:]
	}
	if len(o.labels) == 0 {
		o.labels = nil
	}
	return o
}

func objectKey(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

type eventType uint8

const (
	eventAdded eventType = iota
	eventModified
	eventDeleted
)

// event is one change in a store. obj is the new version (for deletions,
// the last version with the deletion's resourceVersion); prev the one
// before (nil for additions).
type event struct {
	typ   eventType
	obj   *object
	prev  *object
	frame []byte // the watch frame; obj.raw lies inside it
	// seq is the event's number in its store (set by appendLocked): a
	// watcher reading the ring without the lock checks it to notice a
	// slot the writer has reused meanwhile.
	seq uint64
	// encoded is set by the first watcher that pays the event's encoding
	// in the capacity model; the others only pay its delivery.
	encoded atomic.Bool
}

// newEvent makes an event and the object it carries: the object's JSON
// is stored inside the event's watch frame.
func newEvent(typ eventType, raw []byte, namespace, name string, labels map[string]string, nodeName string, rv uint64, prev *object) *event {
	full, objRaw := frame(typ, raw)
	return &event{typ: typ, obj: newObject(objRaw, namespace, name, labels, nodeName, rv), prev: prev, frame: full}
}

// store holds the objects of one resource and its recent events.
type store struct {
	res  *resource
	rv   *atomic.Uint64 // the server's global resourceVersion
	now  func() time.Time
	mu   sync.RWMutex
	objs map[string]*object
	// ring holds the last len(ring) events; event number i (counting
	// from 0 since start) is ring[i%len(ring)]; head events were appended.
	// Writers change ring, head and notify under mu; watchers read them
	// without it (see readEvents), so that a write never waits for the
	// thousand watchers of a busy resource to release a read lock, nor
	// they for it: with 1,000 agents that convoy held every CiliumEndpoint
	// PATCH for seconds and filled the mutating in-flight limit.
	ring []atomic.Pointer[event]
	head atomic.Uint64
	// floor is the resourceVersion of the newest evicted event: a watch
	// from an older resourceVersion cannot be served.
	floor  uint64
	notify atomic.Pointer[chan struct{}]
	// nodeWaiters wake the watchers of one spec.nodeName (the agents'
	// pod watches) only on events of their node, as kube-apiserver's
	// indexed watch triggers do.
	nodeWaiters map[string]chan struct{}
	// objBytes is the size of the stored objects' JSON, for APF's
	// size-based LIST cost estimate (average object size).
	objBytes atomic.Int64
	// eventRate sizes watch channels as kube-apiserver's watch cache
	// does (capacity model, see watchChanSize).
	eventRate rateWindow
	// wal records every event in the state directory (nil: none).
	wal *wal
}

func newStore(res *resource, rv *atomic.Uint64, history int, now func() time.Time) *store {
	st := &store{res: res, rv: rv, now: now, objs: map[string]*object{}, ring: make([]atomic.Pointer[event], history), nodeWaiters: map[string]chan struct{}{}}
	ch := make(chan struct{})
	st.notify.Store(&ch)
	return st
}

// appendLocked records an event and wakes watchers. s.mu must be held.
// The slot is written before head moves past it, and head before the
// notify channel is swapped and closed, so a watcher that loads the
// channel and then head either sees the event or is woken for it.
func (s *store) appendLocked(e *event) {
	switch {
	case e.typ == eventDeleted && e.prev != nil:
		s.objBytes.Add(-int64(len(e.prev.raw)))
	case e.prev != nil:
		s.objBytes.Add(int64(len(e.obj.raw) - len(e.prev.raw)))
	default:
		s.objBytes.Add(int64(len(e.obj.raw)))
	}
	if s.wal != nil {
		// Its error is logged by the log itself; the write stands.
		_ = s.wal.append(s.res, e)
	}
	n := uint64(len(s.ring))
	h := s.head.Load()
	if h >= n {
		s.floor = s.ring[h%n].Load().obj.rv
	}
	e.seq = h
	s.ring[h%n].Store(e)
	s.head.Store(h + 1)
	ch := make(chan struct{})
	close(*s.notify.Swap(&ch))
	if len(s.nodeWaiters) > 0 {
		s.wakeNodeLocked(e.obj.nodeName)
		if e.prev != nil && e.prev.nodeName != e.obj.nodeName {
			s.wakeNodeLocked(e.prev.nodeName)
		}
		// Now and then every node watcher scans the ring, so that an
		// idle one never falls out of the retained history.
		if (h+1)%max(1, n/2) == 0 {
			for node, ch := range s.nodeWaiters {
				close(ch)
				delete(s.nodeWaiters, node)
			}
		}
	}
}

func (s *store) wakeNodeLocked(node string) {
	if ch, ok := s.nodeWaiters[node]; ok {
		close(ch)
		delete(s.nodeWaiters, node)
	}
}

// nodeWaiterLocked returns the channel closed on the next event of an
// object on node (or on a periodic sweep). s.mu must be held for writing.
func (s *store) nodeWaiterLocked(node string) chan struct{} {
	ch := s.nodeWaiters[node]
	if ch == nil {
		ch = make(chan struct{})
		s.nodeWaiters[node] = ch
	}
	return ch
}

func (s *store) get(namespace, name string) (*object, error) {
	s.mu.RLock()
	o := s.objs[objectKey(namespace, name)]
	s.mu.RUnlock()
	if o == nil {
		return nil, apierrors.NewNotFound(s.res.groupResource(), name)
	}
	return o, nil
}

const generateNameChars = "bcdfghjklmnpqrstvwxz2456789"

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = generateNameChars[int(b[i])%len(generateNameChars)]
	}
	return string(b[:])
}

// nameFunc is the name validation of the resource.
func (s *store) nameFunc() validation.ValidateNameFunc {
	if s.res.name == "namespaces" {
		return validation.NameIsDNSLabel
	}
	return validation.NameIsDNSSubdomain
}

// prepareMeta applies the URL's namespace and name to d and validates
// them. name is "" for a create.
func (s *store) prepareMeta(d *document, namespace, name string) error {
	if err := d.checkType(s.res); err != nil {
		return err
	}
	if s.res.namespaced {
		if d.meta.Namespace != "" && d.meta.Namespace != namespace {
			return apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		d.meta.Namespace = namespace
	} else {
		d.meta.Namespace = ""
	}
	if name != "" && d.meta.Name != name {
		if d.meta.Name == "" {
			d.meta.Name = name
		} else {
			return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", d.meta.Name, name))
		}
	}
	return nil
}

func (s *store) validateMeta(d *document) error {
	errs := validation.ValidateObjectMeta(&d.meta, s.res.namespaced, s.nameFunc(), field.NewPath("metadata"))
	if len(errs) > 0 {
		return apierrors.NewInvalid(s.res.groupKind(), d.meta.Name, errs)
	}
	return nil
}

// create stores a new object from d, which prepareMeta has checked.
func (s *store) create(d *document) (*object, error) {
	if d.meta.Name == "" && d.meta.GenerateName != "" {
		d.meta.Name = d.meta.GenerateName + randomSuffix()
	}
	if d.meta.Name == "" {
		return nil, apierrors.NewInvalid(s.res.groupKind(), "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if err := s.validateMeta(d); err != nil {
		return nil, err
	}
	d.meta.UID = types.UID(uuid.NewString())
	d.meta.CreationTimestamp = metav1.NewTime(s.now().UTC().Truncate(time.Second))
	d.meta.Generation = 0
	if s.res.hasGeneration() {
		d.meta.Generation = 1
	}
	d.meta.DeletionTimestamp = nil
	d.meta.DeletionGracePeriodSeconds = nil
	if s.res.status {
		delete(d.fields, "status")
		if s.res.pendingStatus != "" {
			d.fields["status"] = []byte(s.res.pendingStatus)
		}
	}
	nodeName := ""
	if s.res.nodeNameField {
		nodeName = d.nodeName()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := objectKey(d.meta.Namespace, d.meta.Name)
	if _, ok := s.objs[key]; ok {
		return nil, apierrors.NewAlreadyExists(s.res.groupResource(), d.meta.Name)
	}
	rv := s.rv.Add(1)
	d.meta.ResourceVersion = strconv.FormatUint(rv, 10)
	raw, err := d.encode()
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	e := newEvent(eventAdded, raw, d.meta.Namespace, d.meta.Name, d.meta.Labels, nodeName, rv, nil)
	s.objs[key] = e.obj
	s.appendLocked(e)
	return e.obj, nil
}

// mutation turns the current document into the new one, or fails.
type mutation func(cur *document, curRaw []byte) (*document, error)

// update replaces the object namespace/name with what mutate returns.
// subresource is "" or "status". If the object is missing and create is
// not nil, create is called instead (PUT on createOnUpdate resources).
//
// Like kube-apiserver's GuaranteedUpdate, it decodes, mutates and
// validates without the store's lock and takes it only to commit, if the
// object is still the one it started from; otherwise it starts again from
// the new one. mutate may thus be called more than once and must not
// modify what it is given. Under the lock only the resourceVersion is set
// and the object encoded: with the whole update under the lock, 1,000
// agents' CiliumEndpoint PATCHes queued for the lock for seconds each
// (relabel-1k), holding every mutating in-flight slot.
func (s *store) update(namespace, name, subresource, manager string, mutate mutation, create func() (*object, error)) (*object, error) {
	key := objectKey(namespace, name)
	for {
		s.mu.RLock()
		cur := s.objs[key]
		s.mu.RUnlock()
		if cur == nil {
			if create != nil {
				return create()
			}
			return nil, apierrors.NewNotFound(s.res.groupResource(), name)
		}
		nd, err := s.nextVersion(cur, subresource, manager, mutate)
		if err != nil {
			return nil, err
		}
		// A write that changes nothing is not written: no new
		// resourceVersion, no watch event (kube-apiserver's etcd3 store,
		// k8s.io/apiserver pkg/storage/etcd3/store.go GuaranteedUpdate,
		// v1.36, returns the existing object when the new bytes equal it).
		if noop, err := isNoop(cur, nd); err != nil || noop {
			return cur, err
		}
		touchManagedFields(nd, manager, subresource, s.now())
		nodeName := cur.nodeName
		if s.res.nodeNameField {
			nodeName = nd.nodeName()
		}
		o, committed, err := s.commitUpdate(key, cur, nd, nodeName)
		if committed || err != nil {
			return o, err
		}
	}
}

// nextVersion is the document that replaces cur: mutate's result with the
// server-owned fields kept, checked against cur's preconditions.
func (s *store) nextVersion(cur *object, subresource, manager string, mutate mutation) (*document, error) {
	curDoc, err := decodeDocument(cur.raw)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("stored %s %s: %w", s.res.name, cur.key, err))
	}
	nd, err := mutate(curDoc, cur.raw)
	if err != nil {
		return nil, err
	}
	if nd.meta.ResourceVersion != "" && nd.meta.ResourceVersion != curDoc.meta.ResourceVersion {
		return nil, apierrors.NewConflict(s.res.groupResource(), cur.name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	if nd.meta.UID != "" && nd.meta.UID != curDoc.meta.UID {
		return nil, apierrors.NewConflict(s.res.groupResource(), cur.name, statusMessage(fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", nd.meta.UID, curDoc.meta.UID)))
	}
	// Cur (a fresh decode) now becomes the base of the new version.
	if subresource == "status" {
		if st, ok := nd.fields["status"]; ok {
			curDoc.fields["status"] = st
		} else {
			delete(curDoc.fields, "status")
		}
		s.setManagedFields(curDoc, manager, subresource, s.now())
		return curDoc, nil
	}
	if s.res.status {
		if st, ok := curDoc.fields["status"]; ok {
			nd.fields["status"] = st
		} else {
			delete(nd.fields, "status")
		}
	}
	// Server-owned metadata stays as stored.
	nd.meta.UID = curDoc.meta.UID
	nd.meta.CreationTimestamp = curDoc.meta.CreationTimestamp
	nd.meta.Generation = curDoc.meta.Generation
	nd.meta.DeletionTimestamp = curDoc.meta.DeletionTimestamp
	nd.meta.DeletionGracePeriodSeconds = curDoc.meta.DeletionGracePeriodSeconds
	nd.meta.Namespace = curDoc.meta.Namespace
	nd.meta.Name = curDoc.meta.Name
	if nd.meta.GenerateName == "" {
		nd.meta.GenerateName = curDoc.meta.GenerateName
	}
	if err := s.validateMeta(nd); err != nil {
		return nil, err
	}
	skip := []string{"metadata", "apiVersion", "kind"}
	if s.res.status {
		skip = append(skip, "status")
	}
	if s.res.hasGeneration() && !sameContent(nd, curDoc, skip...) {
		nd.meta.Generation++
	}
	nd.meta.ManagedFields = curDoc.meta.ManagedFields
	s.setManagedFields(nd, manager, subresource, s.now())
	return nd, nil
}

// isNoop tells whether nd, given cur's resourceVersion, encodes to cur.
func isNoop(cur *object, nd *document) (bool, error) {
	rv := nd.meta.ResourceVersion
	nd.meta.ResourceVersion = strconv.FormatUint(cur.rv, 10)
	raw, err := nd.encode()
	nd.meta.ResourceVersion = rv
	if err != nil {
		return false, apierrors.NewInternalError(err)
	}
	return bytes.Equal(raw, cur.raw), nil
}

// commitUpdate stores nd as the new version of the object at key if that
// is still cur (committed false otherwise: the caller starts again).
func (s *store) commitUpdate(key string, cur *object, nd *document, nodeName string) (o *object, committed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objs[key] != cur {
		return nil, false, nil
	}
	rv := s.rv.Add(1)
	nd.meta.ResourceVersion = strconv.FormatUint(rv, 10)
	raw, err := nd.encode()
	if err != nil {
		return nil, true, apierrors.NewInternalError(err)
	}
	if nd.meta.DeletionTimestamp != nil && len(nd.meta.Finalizers) == 0 {
		// The last finalizer is gone: the object goes.
		e := newEvent(eventDeleted, raw, cur.namespace, cur.name, nd.meta.Labels, cur.nodeName, rv, cur)
		delete(s.objs, key)
		s.appendLocked(e)
		return e.obj, true, nil
	}
	e := newEvent(eventModified, raw, cur.namespace, cur.name, nd.meta.Labels, nodeName, rv, cur)
	s.objs[key] = e.obj
	s.appendLocked(e)
	return e.obj, true, nil
}

// deleteOptions are the parts of metav1.DeleteOptions the server honours.
type preconditions struct {
	uid string
	rv  string
}

// remove deletes namespace/name. It returns the deleted object, or the
// object marked for deletion if it still has finalizers.
func (s *store) remove(namespace, name string, pre preconditions) (*object, error) {
	key := objectKey(namespace, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.objs[key]
	if cur == nil {
		return nil, apierrors.NewNotFound(s.res.groupResource(), name)
	}
	d, err := decodeDocument(cur.raw)
	if err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("stored %s %s: %w", s.res.name, key, err))
	}
	if pre.uid != "" && pre.uid != string(d.meta.UID) {
		return nil, apierrors.NewConflict(s.res.groupResource(), name, statusMessage(fmt.Sprintf("Precondition failed: UID in precondition: %s, UID in object meta: %s", pre.uid, d.meta.UID)))
	}
	if pre.rv != "" && pre.rv != d.meta.ResourceVersion {
		return nil, apierrors.NewConflict(s.res.groupResource(), name, statusMessage(fmt.Sprintf("Precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s", pre.rv, d.meta.ResourceVersion)))
	}
	if len(d.meta.Finalizers) > 0 && d.meta.DeletionTimestamp != nil {
		return cur, nil
	}
	rv := s.rv.Add(1)
	d.meta.ResourceVersion = strconv.FormatUint(rv, 10)
	typ := eventDeleted
	if len(d.meta.Finalizers) > 0 {
		ts := metav1.NewTime(s.now().UTC().Truncate(time.Second))
		var zero int64
		d.meta.DeletionTimestamp, d.meta.DeletionGracePeriodSeconds = &ts, &zero
		typ = eventModified
	}
	raw, err := d.encode()
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	e := newEvent(typ, raw, cur.namespace, cur.name, cur.labels, cur.nodeName, rv, cur)
	if typ == eventDeleted {
		delete(s.objs, key)
	} else {
		s.objs[key] = e.obj
	}
	s.appendLocked(e)
	return e.obj, nil
}

// snapshot returns the objects that match f and the event position and
// resourceVersion they are current at.
func (s *store) snapshot(f *filter) ([]*object, uint64, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*object
	if f.exactKey != "" {
		if o := s.objs[f.exactKey]; o != nil && f.matches(o) {
			out = append(out, o)
		}
	} else {
		for _, o := range s.objs {
			if f.matches(o) {
				out = append(out, o)
			}
		}
	}
	return out, s.head.Load(), s.rv.Load()
}

// notifyChan is closed on the store's next event.
func (s *store) notifyChan() chan struct{} { return *s.notify.Load() }

// readEvents appends events from..head-1 to batch without the store's
// lock. ok is false when the ring no longer holds all of them: the
// writer evicted or was reusing a slot as it was read.
func (s *store) readEvents(batch []*event, from, head uint64) ([]*event, bool) {
	n := uint64(len(s.ring))
	if head > n && from < head-n {
		return batch, false
	}
	for i := from; i < head; i++ {
		e := s.ring[i%n].Load()
		if e == nil || e.seq != i {
			return batch, false
		}
		batch = append(batch, e)
	}
	return batch, true
}

// lastRV is the resourceVersion of the store's newest event (0 if none).
func (s *store) lastRV() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.head.Load()
	if h == 0 {
		return 0
	}
	return s.ring[(h-1)%uint64(len(s.ring))].Load().obj.rv
}

// count returns how many objects the store holds.
func (s *store) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.objs)
}

// keys returns every key with the given namespace prefix.
func (s *store) keysIn(namespace string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for k, o := range s.objs {
		if o.namespace == namespace {
			out = append(out, k)
		}
	}
	return out
}

func splitKey(k string) (string, string) {
	if i := strings.IndexByte(k, '/'); i >= 0 {
		return k[:i], k[i+1:]
	}
	return "", k
}

// statusMessage is an error whose text is a kube-apiserver message, kept
// word for word (capitalized) because clients and people match on it.
type statusMessage string

func (m statusMessage) Error() string { return string(m) }
