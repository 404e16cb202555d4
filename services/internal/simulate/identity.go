package simulate

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Fake personal data. Everything here is generated: names from common characters,
// phone numbers from real mobile prefixes with a permuted suffix, resident id numbers
// with a valid check digit for a made-up person, addresses on generic street names.
// None of it is taken from or meant to match a real person.

var (
	surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱",
		"胡", "郭", "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭",
		"曾", "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
		"任", "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "廖", "贾", "夏", "韦",
		"付", "方", "白", "邹", "孟", "熊", "秦", "邱", "江", "尹", "薛", "段", "雷", "侯", "龙", "史", "陶",
		"黎", "贺", "顾", "毛", "郝", "龚", "邵", "万", "钱", "严", "覃", "武", "戴", "莫", "孔", "向", "汤",
		"欧阳", "司马", "上官"}
	givenMale = []string{"伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏",
		"华", "飞", "鑫", "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "旭", "宁", "龙", "林", "阳", "建",
		"国", "峰", "亮", "成", "志", "文", "博", "晨", "睿", "轩", "子", "然", "泽", "昊", "铭", "航", "毅"}
	givenFemale = []string{"芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "玲", "桂", "英", "燕", "红",
		"梅", "琳", "婷", "雪", "慧", "颖", "倩", "洁", "佳", "琪", "欣", "怡", "悦", "晶", "萍", "璐", "瑶",
		"雯", "婧", "涵", "馨", "思", "雨", "诗", "淑", "兰", "月", "蕾", "薇", "彤", "萱", "妍", "可"}
	firmWords = []string{"华", "信", "达", "通", "恒", "泰", "盛", "源", "鑫", "宏", "瑞", "博", "远", "新",
		"安", "创", "联", "中", "海", "天", "美", "嘉", "兴", "丰", "德", "金", "利", "星", "云", "启"}
	firmTrades = []string{"科技", "贸易", "物流", "建设工程", "餐饮管理", "电子", "医疗器械", "教育咨询",
		"实业", "网络科技", "食品", "服装", "汽车服务", "房地产经纪", "印刷"}
	agencies = []string{"教育局", "卫生健康局", "税务所", "街道办事处", "人民医院", "第一中学", "图书馆",
		"市场监督管理所", "社区卫生服务中心", "城市管理局"}
	streets = []string{"中山路", "人民路", "解放路", "建设路", "新华路", "和平路", "胜利路", "文化路",
		"长江路", "黄河路", "迎宾大道", "滨江路", "东风路", "北京路", "府前路", "学府路", "科技园路",
		"工业大道", "环城路", "朝阳路", "青年路", "花园路", "体育路", "光明路"}
	// China Mobile number segments.
	mobilePrefixes = []string{"134", "135", "136", "137", "138", "139", "147", "150", "151", "152",
		"157", "158", "159", "172", "178", "182", "183", "184", "187", "188", "195", "197", "198"}
	complaintTexts = map[string][]string{
		"network": {"家里信号差，经常打不通电话", "最近网速很慢，视频一直卡", "小区附近经常掉线", "地下车库完全没有信号"},
		"billing": {"本月话费比平时高很多，怀疑多扣费", "没有订购的业务被扣费", "充值后余额没有到账", "套餐费用和办理时说的不一样"},
		"service": {"营业厅排队太久，工作人员态度不好", "客服电话一直打不进去", "问题反映多次没有人回复", "办理业务被推销其他套餐"},
		"product": {"流量包没有生效", "套餐内容和宣传不符", "积分兑换的商品没有收到", "新办的副卡不能使用"},
		"fraud":   {"收到冒充客服的诈骗电话", "收到中奖诈骗短信", "号码被人冒用办理业务"},
		"other":   {"希望增加营业厅的营业时间", "携号转网办理流程太复杂", "发票开具有问题"},
	}
	surveyComments = map[bool][]string{
		true:  {"服务很好，谢谢", "客服解决问题很快", "工作人员很耐心", "网络挺稳定的", "办理很方便"},
		false: {"等待时间太长", "网速太慢了", "希望资费便宜一点", "问题还是没有解决", "信号不好", "态度一般"},
	}
	idWeights   = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	idChecks    = "10X98765432"
	creditChars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	creditWts   = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}
)

// identity is a customer's personal data, all fake.
type identity struct {
	name     string
	phone    string
	idType   string
	idNumber string
	address  string
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// personName is a plausible Chinese name of the given sex.
func personName(r *rand.Rand, male bool) string {
	given := givenFemale
	if male {
		given = givenMale
	}
	n := pick(r, surnames) + pick(r, given)
	if r.Float64() < 0.65 {
		n += pick(r, given)
	}
	return n
}

// firmName is a plausible company or public body name in the city.
func firmName(r *rand.Rand, reg *Region, segment string) string {
	if segment == "government" {
		return reg.City + pick(r, reg.Districts) + pick(r, agencies)
	}
	return reg.City + pick(r, firmWords) + pick(r, firmWords) + pick(r, firmTrades) + "有限公司"
}

// phoneNumber is a unique +86 mobile number for customer index i: the eight-digit
// suffix is a bijection of the index (so numbers never repeat within a run).
func phoneNumber(r *rand.Rand, i int, salt uint64) string {
	const m = 100_000_000
	// 48,271 is odd and prime to 5, so x -> a*x + b is a bijection modulo 10^8.
	suffix := (uint64(i)*48_271 + salt) % m
	return fmt.Sprintf("+86%s%08d", pick(r, mobilePrefixes), suffix)
}

// residentID is an 18-digit resident identity number with a valid check digit: the
// region's area code, a county, the birth date, a sequence (odd for men), the check.
func residentID(r *rand.Rand, areaCode string, birth time.Time, male bool) string {
	seq := r.IntN(500) * 2
	if male {
		seq++
	}
	body := fmt.Sprintf("%s%02d%s%03d", areaCode, 1+r.IntN(20), birth.Format("20060102"), seq)
	sum := 0
	for k := range 17 {
		sum += int(body[k]-'0') * idWeights[k]
	}
	return body + string(idChecks[sum%11])
}

// creditCode is an 18-character unified social credit code (business licence) with a
// valid check character.
func creditCode(r *rand.Rand, areaCode string) string {
	var b strings.Builder
	b.WriteString("91")
	b.WriteString(areaCode)
	b.WriteString(fmt.Sprintf("%02d", 1+r.IntN(20)))
	for range 9 {
		b.WriteByte(creditChars[r.IntN(len(creditChars))])
	}
	s := b.String()
	sum := 0
	for k := range 17 {
		sum += strings.IndexByte(creditChars, s[k]) * creditWts[k]
	}
	c := 31 - sum%31
	if c == 31 {
		c = 0
	}
	return s + string(creditChars[c])
}

// address is a street address in the region.
func address(r *rand.Rand, reg *Region, business bool) string {
	base := reg.Province + reg.City + pick(r, reg.Districts) + pick(r, streets) + strconv.Itoa(1+r.IntN(300)) + "号"
	if business {
		return base + pick(r, firmWords) + pick(r, firmWords) + "大厦" + strconv.Itoa(1+r.IntN(30)) + "层"
	}
	return base + strconv.Itoa(1+r.IntN(20)) + "栋" + strconv.Itoa(1+r.IntN(30)) + fmt.Sprintf("%02d", 1+r.IntN(8)) + "房"
}

// imei is a 15-digit IMEI with a valid Luhn check digit.
func imei(r *rand.Rand) string {
	d := make([]byte, 15)
	d[0], d[1] = '8', '6'
	for k := 2; k < 14; k++ {
		d[k] = byte('0' + r.IntN(10))
	}
	sum := 0
	for k := range 14 {
		v := int(d[k] - '0')
		if k%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	d[14] = byte('0' + (10-sum%10)%10)
	return string(d)
}

// birthDate is a birth date for an age in years at t.
func birthDate(r *rand.Rand, t time.Time, minAge, maxAge int) time.Time {
	days := (minAge*365 + r.IntN((maxAge-minAge+1)*365))
	return t.AddDate(0, 0, -days)
}

// newIdentity makes the personal data of a customer.
func newIdentity(r *rand.Rand, idx int, salt uint64, reg *Region, enterprise bool, segment string, at time.Time) identity {
	id := identity{phone: phoneNumber(r, idx, salt)}
	if enterprise {
		id.name = firmName(r, reg, segment)
		id.idType = "business_license"
		id.idNumber = creditCode(r, reg.AreaCode)
		id.address = address(r, reg, true)
		return id
	}
	male := r.IntN(2) == 0
	id.name = personName(r, male)
	minAge, maxAge := 26, 59
	switch segment {
	case "youth":
		minAge, maxAge = 16, 25
	case "senior":
		minAge, maxAge = 60, 85
	}
	id.idType = "resident_id"
	id.idNumber = residentID(r, reg.AreaCode, birthDate(r, at, minAge, maxAge), male)
	id.address = address(r, reg, false)
	return id
}
