"""What a voice preview says when the job gives no text: one short sentence per language XTTS
speaks, so a tenant hears a new voice in the language it was made for."""

from __future__ import annotations

from shared.errors import InvalidInput

# Chinese and Japanese are written with their own full-width punctuation.
PREVIEW_TEXT: dict[str, str] = {
    "en": "Hello! This is how I sound. Thanks for listening.",
    "es": "¡Hola! Así es como sueno. Gracias por escuchar.",
    "fr": "Bonjour ! Voici ma voix. Merci de votre écoute.",
    "de": "Hallo! So klingt meine Stimme. Danke fürs Zuhören.",
    "it": "Ciao! Questa è la mia voce. Grazie per l'ascolto.",
    "pt": "Olá! Esta é a minha voz. Obrigado por ouvir.",
    "pl": "Cześć! Tak brzmi mój głos. Dziękuję za wysłuchanie.",
    "tr": "Merhaba! Sesim böyle. Dinlediğiniz için teşekkürler.",
    "ru": "Здравствуйте! Так звучит мой голос. Спасибо, что слушаете.",
    "nl": "Hallo! Zo klinkt mijn stem. Bedankt voor het luisteren.",
    "cs": "Dobrý den! Takhle zní můj hlas. Děkuji za poslech.",
    "ar": "مرحبا! هكذا يبدو صوتي. شكرا على الاستماع.",
    "zh-cn": "你好！这就是我的声音。谢谢收听。",  # noqa: RUF001
    "ja": "こんにちは！これが私の声です。聞いてくれてありがとう。",  # noqa: RUF001
    "hu": "Helló! Így szól a hangom. Köszönöm, hogy meghallgattál.",
    "ko": "안녕하세요! 이것이 제 목소리입니다. 들어 주셔서 감사합니다.",
    "hi": "नमस्ते! मेरी आवाज़ ऐसी है। सुनने के लिए धन्यवाद।",
}


def preview_text(language: str) -> str:
    """The sentence a preview in ``language`` says; ``InvalidInput`` when there is none."""
    text = PREVIEW_TEXT.get(language) or PREVIEW_TEXT.get(language.split("-")[0])
    if text is None:
        raise InvalidInput(
            f"no preview sentence for language {language}; give the preview a text",
            field="text",
        )
    return text
