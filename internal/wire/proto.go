package wire

// Protocol constants. Append only; values are protocol: a value, once
// released, never changes meaning, and new kinds get new numbers.
const (
	// Magic opens every connection, followed by Version.
	Magic = "SMSH"

	// Version is the protocol version the dialer announces in its preface.
	// The acceptor closes connections that announce another version.
	Version byte = 1

	// KindRequest carries a request for the remote handler.
	KindRequest byte = 1
	// KindResponse carries the handler's response to the request with the
	// same ID.
	KindResponse byte = 2
	// KindError answers a request that the remote transport could not hand
	// to its handler; the payload is UTF-8 error text (for example
	// "no handler").
	KindError byte = 3

	// maxKind is the highest kind this version understands.
	maxKind = KindError
)

// Sizes of the fixed parts of the format.
const (
	// PrefaceSize is the length of the connection preface: Magic and Version.
	PrefaceSize = len(Magic) + 1

	// lenSize is the size of the big-endian length N that starts a frame.
	lenSize = 4

	// minFrameLen is the smallest valid N: the request ID and the kind.
	minFrameLen = 8 + 1

	// HeaderSize is the size of a frame without its payload: N, the
	// request ID and the kind.
	HeaderSize = lenSize + minFrameLen

	// MaxPayload is the largest payload the format can describe (N is a
	// uint32 and counts the ID and kind too).
	MaxPayload = 1<<32 - 1 - minFrameLen
)
