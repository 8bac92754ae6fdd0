package tpm

import (
	"errors"
	"testing"
)

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in      string
		want    Device
		wantErr bool
	}{
		{in: "/dev/tpmrm0", want: Device{Kind: DeviceKindPath, Addr: "/dev/tpmrm0"}},
		{in: "/dev/tpm0", want: Device{Kind: DeviceKindPath, Addr: "/dev/tpm0"}},
		{in: "/dev//tpmrm0/", want: Device{Kind: DeviceKindPath, Addr: "/dev/tpmrm0"}},
		{in: "tcp:localhost:2321", want: Device{Kind: DeviceKindTCP, Addr: "localhost:2321"}},
		{in: "tcp:127.0.0.1:2321", want: Device{Kind: DeviceKindTCP, Addr: "127.0.0.1:2321"}},
		{in: "tcp:[::1]:2321", want: Device{Kind: DeviceKindTCP, Addr: "[::1]:2321"}},
		{in: "tcp:swtpm.example-1.internal:65535", want: Device{Kind: DeviceKindTCP, Addr: "swtpm.example-1.internal:65535"}},
		{in: "unix:/run/swtpm/sock", want: Device{Kind: DeviceKindUnix, Addr: "/run/swtpm/sock"}},
		{in: "", wantErr: true},
		{in: " /dev/tpmrm0", wantErr: true},
		{in: "/dev/tpm\x00rm0", wantErr: true},
		{in: "dev/tpmrm0", wantErr: true},
		{in: "tpmrm0", wantErr: true},
		{in: "tcp:", wantErr: true},
		{in: "tcp:localhost", wantErr: true},
		{in: "tcp::2321", wantErr: true},
		{in: "tcp:localhost:0", wantErr: true},
		{in: "tcp:localhost:65536", wantErr: true},
		{in: "tcp:localhost:+80", wantErr: true},
		{in: "tcp:localhost:080", wantErr: true},
		{in: "tcp:localhost:http", wantErr: true},
		{in: "tcp:::1:2321", wantErr: true},
		{in: "tcp:bad_host:2321", wantErr: true},
		{in: "tcp:-bad.example:2321", wantErr: true},
		{in: "unix:", wantErr: true},
		{in: "unix:relative/sock", wantErr: true},
		{in: "http://localhost:2321", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDevice(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidDevice) {
					t.Fatalf("ParseDevice(%q) = %+v, %v; want error wrapping ErrInvalidDevice", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDevice(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseDevice(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			again, err := ParseDevice(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseDevice(%q.String() = %q) = %+v, %v; want %+v", tt.in, got.String(), again, err, got)
			}
		})
	}
}
