"""Names for containers started without --name, in Docker's style: an adjective and a
scientist's or engineer's surname ("focused_hopper"), unique among this store's
containers. As Docker does, never "boring_wozniak" (Steve Wozniak is not boring), and
after a clash a digit is appended ("focused_hopper7")."""
import os

ADJECTIVES = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold "
    "boring brave busy charming clever compassionate competent condescending confident cool "
    "cranky crazy dazzling determined distracted dreamy eager ecstatic elastic elated elegant "
    "eloquent epic exciting fervent festive flamboyant focused friendly frosty funny gallant "
    "gifted goofy gracious great happy hardcore heuristic hopeful hungry infallible inspiring "
    "intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful "
    "pedantic pensive practical priceless quirky quizzical recursing relaxed reverent romantic "
    "sad serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty "
    "trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial "
    "youthful zealous zen").split()

SURNAMES = (
    "agnesi albattani allen almeida antonelli archimedes ardinghelli aryabhata austin babbage "
    "banach banzai bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn "
    "blackwell bohr booth borg bose bouman boyd brahmagupta brattain brown buck burnell cannon "
    "carson cartwright carver cerf chandrasekhar chaplygin chatelet chatterjee chaum chebyshev "
    "clarke cohen colden cori cray curie curran darwin davinci dewdney dhawan diffie dijkstra "
    "dirac driscoll dubinsky easley edison einstein elbakyan elgamal elion ellis engelbart "
    "euclid euler faraday feistel fermat fermi feynman franklin gagarin galileo galois "
    "ganguly gates gauss germain goldberg goldstine goldwasser golick goodall gould greider "
    "grothendieck haibt hamilton haslett hawking heisenberg hellman hermann herschel hertz "
    "heyrovsky hodgkin hofstadter hoover hopper hugle hypatia ishizaka jackson jang jemison "
    "jennings jepsen johnson joliot jones kalam kapitsa kare keldysh keller kepler khayyam "
    "khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt lederberg "
    "lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell "
    "mayer mccarthy mcclintock mclaren mclean mcnulty meitner mendel mendeleev meninsky merkle "
    "mestorf mirzakhani montalcini moore morse moser murdock napier nash neumann newton "
    "nightingale nobel noether northcutt noyce panini pare pascal pasteur payne perlman pike "
    "poincare poitras proskuriakova ptolemy raman ramanujan rhodes ride ritchie robinson "
    "roentgen rosalind rubin saha sammet sanderson satoshi shamir shannon shaw shirley "
    "shockley shtern sinoussi snyder solomon spence stonebraker sutherland swanson swartz "
    "swirles taussig tesla tharp thompson torvalds tu turing varahamihira vaughan villani "
    "visvesvaraya volhard wescoff wilbur wiles williams williamson wilson wing wozniak wright "
    "wu yalow yonath zhukovsky").split()

ATTEMPTS = 10


def _pick(seq):
    return seq[int.from_bytes(os.urandom(4), "little") % len(seq)]


def random_name(retry=0):
    """One candidate; from the second try on, with a digit appended (as Docker does)."""
    while True:
        name = f"{_pick(ADJECTIVES)}_{_pick(SURNAMES)}"
        if name != "boring_wozniak":
            break
    return name + str(_pick(range(10))) if retry else name


def reserve_generated(store, cid):
    """A fresh name reserved in store for cid (the first free of a few candidates)."""
    from fastbox.errors import ContainerStateError
    for retry in range(ATTEMPTS):
        name = random_name(retry)
        try:
            store.reserve_name(name, cid)
            return name
        except ContainerStateError:
            continue
    # Nearly every name taken: the id's start is unique enough.
    name = f"{random_name()}_{cid[:8]}"
    store.reserve_name(name, cid)
    return name
