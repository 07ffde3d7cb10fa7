package ilist

import (
	"slices"
	"testing"
)

func values(l *List[int]) []int {
	var out []int
	for e := l.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value)
	}
	return out
}

func TestList(t *testing.T) {
	var a, b List[int]
	es := make([]Elem[int], 5)
	for i := range es {
		es[i].Value = i
		a.PushBack(&es[i])
	}
	a.Remove(&es[0]) // the front
	a.Remove(&es[2]) // the middle
	a.Remove(&es[4]) // the back
	a.Remove(&es[4]) // not in it any more: nothing
	b.Remove(&es[1]) // in another list: nothing
	if got := values(&a); !slices.Equal(got, []int{1, 3}) || a.Len() != 2 {
		t.Fatalf("after removals: %v (len %d), want [1 3]", got, a.Len())
	}
	a.PushBack(&es[1]) // moves it to the back
	b.PushBack(&es[3]) // moves it to another list
	if got := values(&a); !slices.Equal(got, []int{1}) || a.Len() != 1 {
		t.Errorf("a: %v (len %d), want [1]", got, a.Len())
	}
	if got := values(&b); !slices.Equal(got, []int{3}) || es[3].List() != &b || es[0].List() != nil {
		t.Errorf("b: %v; elements' lists wrong", got)
	}
	a.Remove(&es[1])
	if a.Front() != nil || a.Len() != 0 || a.tail != nil {
		t.Error("an emptied list is not empty")
	}
}
