package query

import "testing"

func TestMasks(t *testing.T) {
	tests := []struct {
		name string
		mask func(string) string
		in   string
		want string
	}{
		{"mobile", maskPhone, "13800138000", "138****8000"},
		{"mobile with country code and punctuation", maskPhone, "+86 138-0013-8000", "138****8000"},
		{"landline", maskPhone, "075588886666", "075*****6666"},
		{"short number", maskPhone, "95588", "*****"},
		{"eight digits", maskPhone, "12345678", "123*5678"},
		{"chinese name", maskName, "张伟", "张*"},
		{"long chinese name", maskName, "欧阳娜娜", "欧*"},
		{"latin name", maskName, "John Smith", "J*"},
		{"one character", maskName, "王", "*"},
		{"empty name", maskName, "", ""},
		{"resident id", maskIDNumber, "110101199003074578", "110101********4578"},
		{"resident id with X", maskIDNumber, "11010119900307457X", "110101********457X"},
		{"passport", maskIDNumber, "E12345678", "*********"},
		{"eleven characters", maskIDNumber, "ABCDEFGHIJK", "ABCDEF*HIJK"},
		{"address", maskAddress, "广东省深圳市福田区深南大道1号", "广东省深圳市…"},
		{"latin address", maskAddress, "1 Shennan Road", "1 Shen…"},
		{"short address", maskAddress, "福田区", "福…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.mask(tt.in); got != tt.want {
				t.Errorf("mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
