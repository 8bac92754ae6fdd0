package fsm

import "fmt"

type handlerKey struct {
	t Type
	v uint16
}

type handler func(t txn, c Command) (any, error)

// handlers is the dispatch table: every (type, version) this binary
// applies. Each file owns the rows of its commands; adding a version adds a
// row, and rows are never edited in place.
var handlers = merge(userHandlers, sessionHandlers, keyHandlers, auditHandlers, escrowHandlers, joinHandlers, barrierHandlers, caKeyHandlers, levelHandlers, memberKeyHandlers, issuerHandlers, lockoutHandlers, sweepHandlers)

func merge(tables ...map[handlerKey]handler) map[handlerKey]handler {
	out := map[handlerKey]handler{}
	for _, t := range tables {
		for k, h := range t {
			if _, dup := out[k]; dup {
				panic(fmt.Sprintf("fsm: two handlers for %s v%d", k.t, k.v))
			}
			out[k] = h
		}
	}
	return out
}
