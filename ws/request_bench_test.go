package ws

import "testing"

func BenchmarkParseRequest(b *testing.B) {
	for _, bc := range []struct{ name, msg string }{
		{"watch", `{"op":"watch","id":"w1","key":"config/","prefix":true,"rev":0,"prev_kv":false,"events":["put","delete"],"snapshot":false}`},
		{"cancel", `{"op":"cancel","id":"w1"}`},
		{"ping", `{"op":"ping"}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			msg := []byte(bc.msg)
			for b.Loop() {
				if _, err := ParseRequest(msg, ParseOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
