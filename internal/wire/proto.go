package wire

// Protocol constants. Append only; values are protocol: a value, once
// released, never changes meaning, and new kinds get new numbers.
const (
	// Magic opens every connection, followed by Version.
	Magic = "SMSH"

	// Version is the protocol version the dialer announces in its preface.
	// The acceptor closes connections that announce another version.
	// Version 1 had a five-byte preface (Magic and Version) and no
	// KindGoAway; version 2 adds the security mode and the cluster label
	// to the preface.
	Version byte = 2

	// KindRequest carries a request for the remote handler.
	KindRequest byte = 1
	// KindResponse carries the handler's response to the request with the
	// same ID.
	KindResponse byte = 2
	// KindError answers a request that the remote transport could not hand
	// to its handler; the payload is UTF-8 error text (for example
	// "no handler"). With ID 0, sent in clear text by an acceptor instead
	// of the rest of the handshake, it refuses the connection (see
	// AppendRefusal): the payload says why, for example another protocol
	// version or cluster label.
	KindError byte = 3
	// KindGoAway is sent by the acceptor to ask the dialer to stop sending
	// requests on the connection: the dialer finishes the calls in flight,
	// sends new ones on a new connection and closes this one. Its ID is 0
	// and its payload, UTF-8 text, says why. An acceptor sends it when the
	// key that authenticated the connection has been removed.
	KindGoAway byte = 4

	// maxKind is the highest kind this version understands.
	maxKind = KindGoAway
)

// Security modes a dialer announces in its preface: how the connection
// continues after the preface. Append only; values are protocol.
const (
	// SecurityNone: frames follow in clear text.
	SecurityNone byte = 0
	// SecuritySecret: a TLS 1.3 handshake follows in which both sides
	// authenticate with keys derived from a shared cluster secret; frames
	// follow inside TLS.
	SecuritySecret byte = 1
	// SecurityTLS: a TLS handshake follows with certificates the operator
	// issued (mutual TLS); frames follow inside TLS.
	SecurityTLS byte = 2

	// maxSecurity is the highest mode this version understands.
	maxSecurity = SecurityTLS
)

// Sizes of the fixed parts of the format.
const (
	// MinPrefaceSize is the length of a preface with an empty label:
	// Magic, Version, the security mode and the label's length.
	MinPrefaceSize = len(Magic) + 3

	// MaxLabelLen is the longest cluster label a preface carries.
	MaxLabelLen = 255

	// MaxPrefaceSize is the length of a preface with the longest label.
	MaxPrefaceSize = MinPrefaceSize + MaxLabelLen

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
