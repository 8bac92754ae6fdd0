package fsm

// TypeReadBarrier changes nothing. A node that has applied a read barrier
// it proposed holds every entry committed before the barrier was, so a
// read after it is linearizable: it sees every write acknowledged
// anywhere in the cluster before the read began. Its payload is {}.
const TypeReadBarrier Type = "read.barrier"

// ReadBarrier is the payload of TypeReadBarrier.
type ReadBarrier struct{}

var barrierCommands = []CommandSpec{
	{Type: TypeReadBarrier, Version: 1, Level: 2, Apply: applyReadBarrier, Result: nil},
}

func applyReadBarrier(_ txn, c Command) (any, error) {
	var p ReadBarrier
	return nil, decodePayload(c, &p)
}
