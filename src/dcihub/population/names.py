"""Invented, culturally neutral names for the synthetic country.

Every name here was made up for dcihub by combining syllables and then picked by hand;
none comes from a census, a baby-name list or any other data set. Any likeness to a real
name or place is a coincidence. The lists are plain tuples so that indexing them with
`random.Random` is fast and deterministic.
"""

from __future__ import annotations

# Given names usually given to girls.
FEMALE_GIVEN_NAMES: tuple[str, ...] = tuple(
    """
Alviel Andela Andya Aselle Bailina Bamene Baskane Belela Belvita Bialiel Bidia Binnessa
Bousara Brara Brela Brelle Brelvika Brette Briallya Brika Brina Brine Brita Bryskira Byllida
Chane Chara Chavida Chela Chelle Chendane Chiel Chika Chimbita Chise Chita Chonnane Chora
Chundessa Chyviel Dakora Damine Delle Denessa Dette Diartene Diaziel Dosise Douldya Dourette
Drakora Drara Dratika Drekia Drelle Drene Driaskira Driel Drise Drita Fainnise Fanessa
Fanita Fantelle Fenida Fennora Fette Fimbette Flane Flarriel Flatya Flene Flessa Flette
Fline Flise Flymina Gailie Gantia Gelara Gelle Gessa Gindette Gintia Gizie Gouskie Grane
Grara Greildita Grervene Grette Griartela Griaskika Grika Grine Grira Grise Grora Grounnira
Gulvya Guskika Gyskia Hatira Havia Heinessa Herriel Hinniel Hyrvida Ilvina Iskane Jairrika
Jatora Jeirtela Jeivara Jelle Jelvida Jette Jiazise Jonane Joukita Julvira Jyzise Kairtela
Karvina Kastia Keidira Kialvane Klane Kleimina Klela Klelle Kleskia Kliel Klina Klise Klora
Kloskya Krane Krara Kressa Krina Krine Krira Krita Krora Kroriel Krounine Krurvessa Kudise
Kumbise Kyldise Lertane Levine Lindara Linika Litya Losira Loullora Loulvira Luldara Lundida
Lundine Lurvela Mamida Matiel Medine Melle Melvene Messa Mette Mirita Molvika Moundora
Moustiel Munine Nairrya Namette Narvida Naskya Natette Nelle Nerrette Nessa Nette Nildela
Nimara Nisiel Numbira Nyndine Orika Ortene Oulvika Ounnida Ouskiel Parvina Pekika Pette
Piastia Prekya Prelle Prene Priasida Prida Prika Prinnira Prise Pruntya Puldane Rakane
Rarelle Rartina Relle Rentine Ressa Rezia Rimora Rondika Rorvina Rostie Roukine Rurra
Sailvita Sarora Saskora Sastette Sedine Senelle Sessa Sheildise Shene Shette Shora Siartya
Sildelle Silviel Sisika Siskelle Sivette Sodina Sodira Soutise Stamise Steilia Stessa Stida
Stiel Stira Stirtora Stise Stonika Stora Stoulira Styndora Sullita Sumida Surira Sylya
Syrelle Tavette Tekiel Telle Terrika Tette Thara Thela Thelle Thentie Theskara Thida Thira
Thizita Tholvela Thora Tonnara Tostika Tranta Trara Trasida Trekela Trela Trelle Trene
Trenessa Tressa Trine Trise Trodane Trora Troudita Trousessa Tuldya Tulline Tunnya Urtessa
Vaisette Vaivela Vandine Vastessa Ventara Vessa Vette Vinnane Vinniel Vivina Voskida
Voundine Vourta Ylelle Yrressa Zarrine Zeillane Zeiskora Zessa Zikane Zountora
""".split()
)


# Given names usually given to boys.
MALE_GIVEN_NAMES: tuple[str, ...] = tuple(
    """
Aimian Ainik Arrim Artovan Bailis Baisert Baitas Banniro Berrar Bestas Bovan Bradus Brakim
Bralvovan Brantal Brartert Breirror Brennon Brirad Briro Broskis Chaneth Chartim Cheth
Chiakan Chimian Chodis Chonnus Chyrtem Chyskas Daizim Daizis Dannor Datert Derrim Destim
Doskas Dovan Draitiro Draskon Dreireth Dreiror Drert Dreth Drilik Driro Drouzar Dryrtor
Eimal Elden Eniro Errar Fevovan Fiarris Flert Flervis Fliastad Flollor Fluren Flurrad Foliro
Fomas Fymbovan Gaidal Gavik Gembon Geskem Giateth Gousim Grazovan Greizik Grert Greston
Griallal Griarrian Griason Grikel Grodor Grorro Grovan Gryllus Grylo Gullus Hadeth Hannas
Heinem Hintik Husto Huvon Ilviro Innert Izovan Jaidian Jeilleth Jeivel Jendeth Jitar Jizert
Jombeth Jortis Joson Jouzus Jylan Karrar Keiris Kelvar Kisal Klarrus Klert Klerviro Kleth
Klian Klillan Klotas Klouno Klouvar Klovan Kotan Kourvim Kovan Krairvon Krarviro Kreileth
Krert Krian Krindo Kriro Kroundik Laildan Leirteth Leistal Lerrian Lezas Liatis Lilvis Lital
Litert Lival Lokor Loldis Lomem Lonnis Lontas Lorrem Loundik Louran Lovan Lyllan Lyllis
Lyrrert Madis Malvus Mantus Mastad Mavad Mazik Meidem Meiniro Menar Meras Mertas Merteth
Mertik Miandas Mollik Moumor Movan Munan Myrtim Myrvovan Naimbim Nainel Naldo Nannad Natel
Naten Nazert Neistar Nennus Nerven Niarvik Ninto Nonniro Novan Nunden Oukert Outan Pelleth
Piliro Pirrar Pitian Ponten Poulviro Pousian Poustem Povan Praivian Pralel Praliro Praskovan
Prenor Prert Preskik Priakim Prinnis Pritus Prourrad Provan Pryllal Prynnad Raidas Raistel
Ralad Reirro Rendem Riallen Riaskik Rikal Riliro Rimad Rirro Rombel Rountis Rovan Rumbik
Runtad Ruran Saindon Seilvad Seimal Selen Shaindar Shairvim Shaskel Sheirem Sheisas Sheisken
Sheskar Shian Shiro Shoundad Shouzon Shovan Shurvas Siaval Sombis Sortem Soukiro Sovan
Stakad Stanad Stert Steth Stian Stintem Stiro Stomem Stortiro Stutim Stylik Stystert Survel
Taitovan Tarvus Tasteth Taval Teinnel Tenton Testim Tezian Thaden Thaidor Thaimel Thakan
Thatus Thendor Thert Theth Thevus Thian Thilen Tisad Todis Tollen Tonnel Tortar Tovan
Traimbad Travert Treirror Trerris Trert Trian Trimik Trisiro Trondim Trorian Trovan Tuldal
Valdor Varven Vaviro Veizus Veldal Vellem Viason Vovan Vyrvon Zaldas Zambus Zedian Zervas
Zotis Zovan Zymor Zystan
""".split()
)


# Family names, passed down from the father (or the mother when there is none).
SURNAMES: tuple[str, ...] = tuple(
    """
Adovar Ainneyo Ainnun Airrura Aison Akati Arari Arrari Asberg Atando Bakolo Baness Bartinet
Bekori Biastorra Bilvess Braikberg Brairrani Brald Bramberi Bramo Brarrura Briaskald
Brousado Brovori Bruzon Bunesk Bunnati Burtara Chalberg Chamamo Chaminet Chando Chatun
Chazara Chazwen Cheivosi Chenneri Chenti Chesun Chiazani Chinet Chitamo Chomun Chorra Chovar
Chustura Chydon Chylberg Chysori Daimon Delleyo Dententi Dervinet Dervori Dinnesk Disteth
Dokolo Domamo Dounderi Drado Dralura Drando Drasenti Drati Drisari Drolo Drolovar Drorra
Drurando Drureth Eilvamo Eistess Embeth Ervovich Estari Fadani Faivovar Faldekko Fasenti
Feillani Feson Flado Flainado Flenti Fletori Fliasteri Flidori Fliskeri Flisosi Flondenti
Fonteri Fouress Gamwen Gelvamo Girtamo Gomura Gouteyo Govich Grado Gramorra Grelorra
Grelvado Grennon Greskado Grindani Grirrara Grorra Grourtari Grourteth Grura Grynteyo
Hanneri Himbosi Himbun Hinet Hiskani Hyllon Iadinet Iamari Inesk Irvinet Ismund Istun Izovar
Jalenti Jeidberg Jekko Jellenti Jeteri Jiallun Jimbinet Jitwen Jorra Jounnesk Judeyo Jynderi
Kadovar Kanderi Kantorra Keivando Keskolo Kinninet Kiramo Kiress Kistani Klado Klari Klenti
Klesesk Kleyo Kliresk Klolo Klomberg Klomesk Klorra Klorrori Klosi Klotado Klura Koumbess
Kovich Kozess Kralberg Krandado Krannari Krerrura Kreseri Krezosi Krinet Krolleyo Krosi
Krumberg Krundori Krymwen Kulvekko Kuzando Kyvmund Laildon Lalara Lallekko Lanamo Lando
Lanmund Lavani Lazari Leireyo Lemeyo Lenti Liakeri Lialdolo Lillura Lirton Lorra Lorvura
Louldara Louteyo Ludorra Lurura Lymbado Lyrmund Mainovich Mallinet Malvosi Manosi Marrado
Meistekko Mervun Mikenti Millovar Minnekko Mirberg Moldura Morrolo Mosketh Mosolo Motamo
Movich Muntekko Myllori Myndovich Mysberg Naikekko Neindura Niazmund Ninado Ninet Nondess
Noskosi Noummund Nozun Nundeyo Nuvberg Nyskati Olleth Olvando Onnovich Oukenti Oulovar
Oustara Panando Parresk Penti Piadald Pialvovar Pianeyo Piarrati Pirtani Poldani Poukati
Pradosi Prantald Prazesk Preldado Prenti Prorteyo Prosun Proukovar Provar Raiskald Raldovich
Rambari Ramosi Rarvovich Reilani Reivari Renti Riambamo Riavari Rirtorra Riskess Rivando
Rombani Rososi Roulventi Sadovich Sando Sannando Sasberg Saskeri Sazosi Seildando Seiresk
Semari Sementi Sennovar Senti Sertati Sertori Servani Sezolo Shaidari Shaldeth Shando Shesk
Shetald Shirrenti Shonberg Shontun Shorrun Shosi Shoundon Siannado Sirton Sirvamo Sistado
Soldari Sonnani Sorvon Souldorra Sousald Sozald Sozamo Standari Standati Stando Stani
Stazberg Stekko Steri Stidess Stirtolo Stolvekko Storra Storvun Stukekko Stymekko Stymenti
Stynorra Styntani Survorra Sustori Taineth Takolo Taldani Talvori Tando Tastani Teirtara
Tekko Tekmund Tembun Tertura Tezara Thainati Thalveyo Thani Thati Thidberg Thirrori Thorramo
Thourtara Thura Tianneri Tiatberg Tillekko Timati Timbekko Timberi Timmund Tollura Tondinet
Tostinet Touldon Tovar Tovich Trald Tranando Trando Traskon Treth Triambani Trikess Trirron
Trori Troumbess Troutun Trustori Tumbekko Ulori Umeth Vaildari Vairtald Vakenti Varvon
Vavara Veiskon Velwen Virald Vovar Vuldekko Vylinet Ynnovar Ytenti Zaildun Zaisinet
Zaisovich Zando Zatati Zelventi Zillovar Zourolo Zovar
""".split()
)


# The country: ISO-3166-like user-assigned code and its currency (ISO-4217-like).
COUNTRY_NAME = "Republic of Arvenia"
COUNTRY_CODE = "XX"
CURRENCY = "XXD"
CALLING_CODE = "+999"

# Regions as (name, ISO-3166-2-like code, share of the population, share living rurally,
# districts). Aldmere holds the capital and is the most urban; Dunveld is the farm belt.
REGIONS: tuple[tuple[str, str, float, float, tuple[str, ...]], ...] = (
    ("Aldmere", "XX-AL", 0.30, 0.20, ("Port Aldis", "Velmont", "Sarrow", "Kethra")),
    ("Brevanne", "XX-BR", 0.22, 0.55, ("Tolvik", "Marisen", "Ondra", "Pellan")),
    ("Coranth", "XX-CO", 0.18, 0.70, ("Ustava", "Reddan", "Qarel", "Ismor")),
    ("Dunveld", "XX-DV", 0.15, 0.80, ("Hessa", "Travin", "Lowmarsh", "Kilnar")),
    ("Esmarra", "XX-ES", 0.15, 0.50, ("Esmar Bay", "Zerrin", "Nalvo", "Tessik")),
)

STREET_NAMES: tuple[str, ...] = tuple(
    """
Acacia Amber Baker Birch Bridge Canal Cedar Chapel Clover Copper Dune Elm Ferry Fig Garden
Granary Harbour Hill Juniper Kiln Lake Lantern Linden Market Meadow Mill Moss Oak Olive
Orchard Palm Quarry River Saffron School Spring Station Stone Tamarind Tannery Terrace Well
Willow Windmill
""".split()
)
STREET_KINDS: tuple[str, ...] = ("Street", "Road", "Lane", "Avenue", "Close", "Way")
