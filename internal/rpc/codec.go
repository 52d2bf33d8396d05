package rpc

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxCodecErrorBytes bounds the text of a decoding error that a client gets
// back: protojson quotes an out-of-range number in full, so a 900 KB
// "quantity" would otherwise come back as a 900 KB message (in a gRPC
// header, with the JSON codec over gRPC).
const maxCodecErrorBytes = 256

// jsonCodec is connect-go's JSON codec (protojson, unknown fields discarded
// for forward compatibility) with bounded error messages. It is registered
// under both names connect-go uses for JSON.
type jsonCodec struct{ name string }

func (c jsonCodec) Name() string { return c.name }

func (c jsonCodec) Marshal(message any) ([]byte, error) {
	return c.MarshalAppend(nil, message)
}

func (c jsonCodec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", message)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable and IsBinary make it a stable codec, as connect-go's is:
// clients use it to build Connect GET URLs.
func (c jsonCodec) MarshalStable(message any) ([]byte, error) {
	b, err := c.Marshal(message)
	if err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

func (jsonCodec) IsBinary() bool { return false }

func (c jsonCodec) Unmarshal(data []byte, message any) error {
	m, ok := message.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", message)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %s: %s", m.ProtoReflect().Descriptor().FullName(), Truncate(err.Error(), maxCodecErrorBytes))
	}
	return nil
}

// boundedGzip is a gzip decompressor that stops producing bytes just past
// [MaxMessageBytes]. connect-go reads one byte past the limit to see that a
// message is too big, then reads the rest to say by how much: from a
// compression bomb (1 MiB of gzip is about 1 GiB of zeros) that is a second
// of CPU per request for one line of error text. With this, it learns only
// that the message is too big, and the client gets RESOURCE_EXHAUSTED all
// the same.
type boundedGzip struct {
	gzip.Reader
	left int64 // bytes it may still produce
}

func newBoundedGzip() connect.Decompressor { return &boundedGzip{} }

func (d *boundedGzip) Reset(r io.Reader) error {
	d.left = MaxMessageBytes + 1
	return d.Reader.Reset(r)
}

func (d *boundedGzip) Read(p []byte) (int, error) {
	if d.left <= 0 {
		return 0, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("decompressed message is larger than %d bytes", MaxMessageBytes))
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.Reader.Read(p)
	d.left -= int64(n)
	return n, err
}

func newGzipWriter() connect.Compressor { return gzip.NewWriter(io.Discard) }
