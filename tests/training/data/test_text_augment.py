from training.data.text_augment import keep_attribute_words


def test_keeps_only_attribute_words_in_order() -> None:
    caption = "The woman is wearing a Red coat and black trousers, carrying a white handbag."
    assert keep_attribute_words(caption) == "woman red coat black trousers white handbag"


def test_caption_without_attribute_words_is_kept_whole() -> None:
    assert keep_attribute_words("someone walking by") == "someone walking by"
