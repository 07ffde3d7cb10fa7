// Package ilist is an intrusive doubly linked list: the links live in the
// element (an Elem kept in its struct), so that putting an element in a
// list, taking it out or moving it allocates nothing. haul's least recently
// used orders (the per-host table, the idle connections of its HTTP
// clients, and the limit on idle connections across them) are such lists,
// where container/list would allocate an element per insertion.
package ilist

// Elem is an element's place in a List. The zero Elem is in no list; Value
// is the element it stands for, set by its owner.
type Elem[T any] struct {
	prev, next *Elem[T]
	list       *List[T]
	Value      T
}

// List returns the list e is in, nil if none.
func (e *Elem[T]) List() *List[T] { return e.list }

// Next returns the element after e in its list, nil if e is the last or in
// no list.
func (e *Elem[T]) Next() *Elem[T] { return e.next }

// List is a list of Elems, in the order they were pushed. The zero List is
// empty and ready to use. It is not safe for concurrent use.
type List[T any] struct {
	head, tail *Elem[T]
	n          int
}

// Len returns the number of elements in l.
func (l *List[T]) Len() int { return l.n }

// Front returns the first element (the least recently pushed), nil if l is
// empty.
func (l *List[T]) Front() *Elem[T] { return l.head }

// PushBack puts e at the end of l, taking it out of the list it is in first.
func (l *List[T]) PushBack(e *Elem[T]) {
	if e.list != nil {
		e.list.Remove(e)
	}
	e.list, e.prev, e.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

// Remove takes e out of l. It does nothing if e is not in l.
func (l *List[T]) Remove(e *Elem[T]) {
	if e.list != l {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.list, e.prev, e.next = nil, nil, nil
	l.n--
}
